// `node --import @neopro/guest-sdk/testing/register --test ...`: the
// SDK's `neopro:agent/*` imports resolve to the fake host (host.mjs), one
// module instance per interface, so a handler runs in Node against a
// `fakeBox` (see index.js).
import { register } from "node:module";

register(
  "data:text/javascript," +
    encodeURIComponent(`
const host = ${JSON.stringify(new URL("./host.mjs", import.meta.url).href)};
export async function resolve(specifier, context, next) {
  const m = /^neopro:agent\\/([a-z-]+)@/.exec(specifier);
  if (m) return { url: host + "?interface=" + m[1], shortCircuit: true };
  return next(specifier, context);
}`),
);
