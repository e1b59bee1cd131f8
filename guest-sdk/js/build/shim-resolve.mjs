// Module resolution hook, registered by preopens.mjs in jco's process.
// componentize-js 0.23 (the SpiderMonkey build) imports
// @bytecodealliance/preview2-shim at run time but declares it only as a
// devDependency, so npm installs no copy it can see and the build stops
// with ERR_MODULE_NOT_FOUND. The SDK depends on the shim itself (0.17.x,
// the line componentize-js 0.23 is tested with); an import of it that
// finds no copy from where it is made is resolved from the SDK's folder.
// Remove once componentize-js lists the shim in its dependencies.
const sdk = new URL("../package.json", import.meta.url).href;
const SHIM = "@bytecodealliance/preview2-shim";

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    const shim = specifier === SHIM || specifier.startsWith(`${SHIM}/`);
    if (!shim || error?.code !== "ERR_MODULE_NOT_FOUND") throw error;
    return nextResolve(specifier, { ...context, parentURL: sdk });
  }
}
