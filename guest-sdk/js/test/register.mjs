// `node --import ./test/register.mjs --test`: the SDK's `neopro:agent/*`
// imports resolve to the fake host in fake-host.mjs.
import { register } from "node:module";

register(
  "data:text/javascript," +
    encodeURIComponent(`
export async function resolve(specifier, context, next) {
  if (specifier.startsWith("neopro:agent/")) {
    return { url: new URL("./fake-host.mjs", ${JSON.stringify(import.meta.url)}).href + "#" + specifier, shortCircuit: true };
  }
  return next(specifier, context);
}`),
);
