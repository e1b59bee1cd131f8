// What jco imports as "componentize-qjs" in the build (see shim-resolve.mjs):
// the real package, with every componentize call given the pinned runtime
// of pinned-runtime.mjs instead of the built-in non-async one, so two
// builds of the same source are byte-identical. Only for the non-async
// build the SDK makes: an async request is passed through unchanged.
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { pinnedRuntime } from "./pinned-runtime.mjs";

const real = new URL(import.meta.url).searchParams.get("real");
if (!real) throw new Error("componentize-qjs-pinned.mjs is loaded by the build's resolve hook only");
const upstream = await import(real);
const upstreamComponentize = upstream.componentize ?? upstream.default.componentize;

export async function componentize(opts) {
  if (!opts.sync || opts.runtime || opts.runtimeBytes || opts.optSize) return upstreamComponentize(opts);
  const runtimeBytes = await pinnedRuntime(dirname(fileURLToPath(real)));
  const { sync: _sync, ...rest } = opts;
  return upstreamComponentize({ ...rest, runtimeBytes });
}

export const runCli = upstream.runCli ?? upstream.default?.runCli;
export default { componentize, runCli };
