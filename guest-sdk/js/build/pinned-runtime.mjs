// The QuickJS runtime the build embeds, made reproducible.
//
// componentize-qjs builds a component by running the runtime's `init`
// (QuickJS starts, the bundle is evaluated) under Wizer and snapshotting
// its memory. During that run the runtime reads three host inputs that
// differ on every build: `wasi:random/insecure-seed` (Rust's HashMap keys,
// and so the order of the tables in the snapshot), the wall clock (QuickJS
// seeds Math.random with it) and the monotonic clock. Two builds of the
// same source then differed in ~100 bytes of 1.8 MB, so a signed release
// could not be rebuilt to check it.
//
// componentize-qjs 0.4 has no option to pin them, but it accepts a custom
// runtime. This module takes the built-in non-async runtime out of the
// installed native binding (where it is embedded as a plain WebAssembly
// module) and rewrites those three imports: while a `pinned` flag is set
// they answer constants; the wrapped `init` export clears the flag when it
// returns, so the snapshot holds the flag cleared and a running component
// reads the real clocks and seed. Everything else is the upstream runtime,
// unchanged. The result is a function of the binding's bytes only (binaryen
// is deterministic), cached under node_modules/.cache.
//
// What a pinned seed costs: Rust's HashMap keys in the snapshot are the
// same for every build, where before they were the same for every run of
// one build; the runtime's own tables already use fixed-seed hashers
// upstream, and Math.random is reseeded per command by the SDK.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** Bumped whenever the rewrite below changes, so a cached runtime of an
 * older rewrite is not reused. */
const REWRITE_VERSION = 1;
const MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

export class PinnedRuntimeError extends Error {}

/** The installed componentize-qjs native binding (the `.node` file npm
 * picked for this platform), found from the componentize-qjs package. */
export function bindingFile(componentizeQjsDir) {
  const scope = join(dirname(componentizeQjsDir), "@andreiltd");
  const candidates = existsSync(scope)
    ? readdirSync(scope)
        .filter((name) => name.startsWith("componentize-qjs-binding-"))
        .flatMap((name) =>
          readdirSync(join(scope, name))
            .filter((file) => file.endsWith(".node"))
            .map((file) => join(scope, name, file)),
        )
    : [];
  const platform = `${process.platform}-${process.arch}`;
  const found = candidates.find((file) => file.includes(platform)) ?? candidates[0];
  if (!found) {
    throw new PinnedRuntimeError(
      `no componentize-qjs native binding under ${scope}: run npm ci in the project (the lockfile installs it)`,
    );
  }
  return found;
}

function leb(bytes, at) {
  let value = 0;
  let shift = 0;
  let byte;
  do {
    if (at >= bytes.length) return [-1, at];
    byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80 && shift < 35);
  return [value, at];
}

/** The WebAssembly modules embedded in `bytes`: each runs from a magic
 * number through the sections that parse as a module's. */
export function embeddedModules(bytes) {
  const modules = [];
  for (let start = bytes.indexOf(MAGIC); start >= 0; start = bytes.indexOf(MAGIC, start + MAGIC.length)) {
    let at = start + MAGIC.length;
    let last = 0;
    let sections = 0;
    while (at < bytes.length) {
      const id = bytes[at];
      // Known section ids (custom = 0 anywhere; 12, data count, sits between 10 and 11).
      if (id > 13 || (id !== 0 && id !== 12 && id <= last)) break;
      const [size, body] = leb(bytes, at + 1);
      if (size < 0 || body + size > bytes.length) break;
      if (id === 0) {
        const [nameLength, name] = leb(bytes, body);
        if (nameLength <= 0 || name + nameLength > body + size) break;
        if (!/^[\x20-\x7e]+$/.test(bytes.subarray(name, name + nameLength).toString("latin1"))) break;
      } else if (id !== 12) {
        last = id;
      }
      at = body + size;
      sections += 1;
    }
    if (sections > 0) modules.push(bytes.subarray(start, at));
  }
  return modules;
}

/** The built-in non-async QuickJS runtime of the binding: a shared library
 * (dylink.0) that exports `init` and imports the module loader but none of
 * the component-model async intrinsics; of the speed and size variants,
 * the larger (speed) one, which is what `sync: true` embeds. */
export function syncRuntime(bindingBytes) {
  const runtimes = embeddedModules(bindingBytes).filter(
    (module) =>
      module.includes(Buffer.from("dylink.0")) &&
      module.includes(Buffer.from("local:init/module-loader")) &&
      module.includes(Buffer.from("wasi:random/insecure-seed@")) &&
      !module.includes(Buffer.from("[task-cancel]")),
  );
  if (runtimes.length === 0) {
    throw new PinnedRuntimeError(
      "the componentize-qjs binding embeds no non-async QuickJS runtime this SDK knows: its version is not the one the SDK's lockfile pins",
    );
  }
  return runtimes.reduce((a, b) => (b.length > a.length ? b : a));
}

/** `runtime` with its seed and clock imports pinned until `init` returns. */
export async function pinRuntime(runtime) {
  const { default: binaryen } = await import("binaryen");
  const module = binaryen.readBinary(runtime);
  try {
    module.setFeatures(binaryen.Features.All);
    const imports = [];
    for (let i = 0; i < module.getNumFunctions(); i++) {
      const info = binaryen.getFunctionInfo(module.getFunctionByIndex(i));
      if (info.module) imports.push(info);
    }
    const imported = (prefix, base) => {
      const found = imports.filter((f) => f.module.startsWith(prefix) && f.base === base);
      if (found.length !== 1) throw new PinnedRuntimeError(`the QuickJS runtime imports ${prefix}…#${base} ${found.length} times, not once`);
      return found[0];
    };
    const PINNED = "neopro$pinned";
    module.addGlobal(PINNED, binaryen.i32, true, module.i32.const(1));
    const i32 = binaryen.i32;
    const ptr = () => module.local.get(0, i32);
    // The import keeps its internal name as a defined function, so every
    // call to it (Binaryen refers to functions by name) goes through it.
    const replace = (info, pinnedBody) => {
      const real = `neopro$real$${info.name}`;
      module.removeFunction(info.name);
      module.addFunctionImport(real, info.module, info.base, info.params, info.results);
      const args = binaryen.expandType(info.params).map((type, i) => module.local.get(i, type));
      module.addFunction(
        info.name,
        info.params,
        info.results,
        [],
        module.if(module.global.get(PINNED, i32), pinnedBody, module.call(real, args, info.results)),
      );
    };
    // insecure-seed: func() -> tuple<u64, u64>, written at the return pointer.
    replace(
      imported("wasi:random/insecure-seed@", "insecure-seed"),
      module.block(null, [
        module.i64.store(0, 8, ptr(), module.i64.const(0x6e656f70726f2d31n)),
        module.i64.store(8, 8, ptr(), module.i64.const(0x70696e6e65642d31n)),
      ]),
    );
    // wall-clock.now: func() -> datetime {seconds: u64, nanoseconds: u32}: the epoch.
    replace(
      imported("wasi:clocks/wall-clock@", "now"),
      module.block(null, [module.i64.store(0, 8, ptr(), module.i64.const(0n)), module.i32.store(8, 4, ptr(), module.i32.const(0))]),
    );
    // monotonic-clock.now: func() -> instant (u64): zero.
    replace(imported("wasi:clocks/monotonic-clock@", "now"), module.i64.const(0n));

    const init = binaryen.getExportInfo(module.getExport("init"));
    if (!init || init.kind !== binaryen.ExternalFunction) throw new PinnedRuntimeError("the QuickJS runtime exports no init function");
    const target = binaryen.getFunctionInfo(module.getFunction(init.value));
    const params = binaryen.expandType(target.params);
    const result = params.length;
    module.addFunction("neopro$init", target.params, target.results, [target.results], module.block(null, [
      module.local.set(result, module.call(init.value, params.map((type, i) => module.local.get(i, type)), target.results)),
      module.global.set(PINNED, module.i32.const(0)),
      module.local.get(result, target.results),
    ], target.results));
    module.removeExport("init");
    module.addFunctionExport("neopro$init", "init");
    if (!module.validate()) throw new PinnedRuntimeError("the rewritten QuickJS runtime does not validate");
    return Buffer.from(module.emitBinary());
  } finally {
    module.dispose();
  }
}

/** The pinned runtime for the componentize-qjs installed at
 * `componentizeQjsDir`, from the cache when it was made before. */
export async function pinnedRuntime(componentizeQjsDir) {
  const binding = readFileSync(bindingFile(componentizeQjsDir));
  const key = createHash("sha256").update(binding).update(`rewrite ${REWRITE_VERSION}`).digest("hex").slice(0, 32);
  const cacheDir = join(dirname(componentizeQjsDir), ".cache", "neopro-guest-sdk");
  const cached = join(cacheDir, `qjs-runtime-${key}.wasm`);
  if (existsSync(cached)) return readFileSync(cached);
  const pinned = await pinRuntime(syncRuntime(binding));
  try {
    mkdirSync(cacheDir, { recursive: true });
    const partial = `${cached}.${process.pid}.partial`;
    writeFileSync(partial, pinned);
    renameSync(partial, cached);
  } catch {
    // A read-only node_modules: rebuild it next time.
  }
  return pinned;
}

/** The componentize-qjs package folder, resolved as jco resolves it. */
export function componentizeQjsDir(fromUrl) {
  return dirname(createRequire(fromUrl).resolve("componentize-qjs/package.json"));
}
