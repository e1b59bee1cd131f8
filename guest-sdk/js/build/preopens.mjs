// Preloaded (`node --import`) into jco's own tools. jco 1.35 runs its WIT
// tooling as a component on the bundled @bytecodealliance/preview2-shim
// 0.26, which starts with no preopened folder: every path it reads fails
// with "os error 44". Giving each copy of the shim the host's root as its
// one preopen makes `jco guest-types` and `jco componentize` read files
// again. Remove once jco ships a shim that preopens the working folder.
import { existsSync } from "node:fs";
import { register } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// jco's package folder (.../@bytecodealliance/jco), wherever npm put it.
const jco = dirname(dirname(fileURLToPath(import.meta.resolve("@bytecodealliance/jco"))));
const scope = dirname(jco);
const copies = [
  join(scope, "preview2-shim"),
  join(jco, "node_modules/@bytecodealliance/preview2-shim"),
  join(scope, "jco-transpile/node_modules/@bytecodealliance/preview2-shim"),
];
for (const copy of copies) {
  const file = join(copy, "dist", "nodejs", "filesystem.js");
  if (!existsSync(file)) continue;
  const shim = await import(pathToFileURL(file).href);
  if (typeof shim._setPreopens === "function") shim._setPreopens({ "/": "/" });
}

// The SpiderMonkey build's missing dependency: see shim-resolve.mjs.
register("./shim-resolve.mjs", import.meta.url);
