// Module resolution hook, registered by preopens.mjs in jco's process.
//
// 1. componentize-js 0.23 (the SpiderMonkey build) imports
//    @bytecodealliance/preview2-shim at run time but declares it only as a
//    devDependency, so npm installs no copy it can see and the build stops
//    with ERR_MODULE_NOT_FOUND. The SDK depends on the shim itself (0.17.x,
//    the line componentize-js 0.23 is tested with); an import of it that
//    finds no copy from where it is made is resolved from the SDK's folder.
//    Remove once componentize-js lists the shim in its dependencies.
// 2. jco's import of componentize-qjs (the QuickJS build) is answered by
//    componentize-qjs-pinned.mjs, which gives it the runtime with its seed
//    and clocks pinned during pre-initialisation (pinned-runtime.mjs): the
//    build is then reproducible. Remove once componentize-qjs pins them.
const sdk = new URL("../package.json", import.meta.url).href;
const SHIM = "@bytecodealliance/preview2-shim";
const PINNED = new URL("./componentize-qjs-pinned.mjs", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (specifier === "componentize-qjs" && /\/@bytecodealliance\/jco\//.test(context.parentURL ?? "")) {
    const real = await nextResolve(specifier, context);
    return { url: `${PINNED}?real=${encodeURIComponent(real.url)}`, format: "module", shortCircuit: true };
  }
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    const shim = specifier === SHIM || specifier.startsWith(`${SHIM}/`);
    if (!shim || error?.code !== "ERR_MODULE_NOT_FOUND") throw error;
    return nextResolve(specifier, { ...context, parentURL: sdk });
  }
}
