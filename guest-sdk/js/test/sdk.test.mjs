import { test } from "node:test";
import { deepStrictEqual, match, strictEqual, throws } from "node:assert";
import { CommandError, configStore, defineCommand, files, log, progress, reseedMathRandom, sourceFrames } from "../index.js";

const host = globalThis.fakeHost;
const command = (data) => ({ id: "c1", commandType: "t", data });

test("defineCommand: data in, JSON out, {} for empty data", () => {
  const handler = defineCommand((data, ctx) => ({ got: data, type: ctx.commandType }));
  strictEqual(handler.execute(command('{"a":1}')), '{"got":{"a":1},"type":"t"}');
  strictEqual(handler.execute(command("  ")), '{"got":{},"type":"t"}');
});

test("errors become the WIT variant with their kind", () => {
  const thrown = (run, data = "{}") => {
    try {
      defineCommand(run).execute(command(data));
    } catch (e) {
      return e;
    }
    return null;
  };
  deepStrictEqual(thrown(() => { throw CommandError.tooLarge("big"); }), { tag: "too-large", val: "big" });
  deepStrictEqual(thrown(() => { throw new TypeError("oops"); }), { tag: "failed", val: "oops" });
  deepStrictEqual(thrown(() => files.list("videos", "missing")), { tag: "not-found", val: "no such folder" });
  const bad = thrown(() => 1, "{nope");
  strictEqual(bad.tag, "invalid-input");
  strictEqual(bad.val.startsWith("invalid data for command 't': "), true);
});

test("every WIT error kind has a constructor", () => {
  const kinds = ["invalidInput", "notPermitted", "notFound", "checksumMismatch", "tooLarge", "timeout", "io", "failed"]
    .map((c) => CommandError[c]("m").toWit().tag);
  deepStrictEqual(kinds, ["invalid-input", "not-permitted", "not-found", "checksum-mismatch", "too-large", "timeout", "io", "failed"]);
});

test("u64 values are Numbers; u64 arguments follow the engine", () => {
  deepStrictEqual(files.list("videos", ""), [
    { name: "a.mp4", kind: "file", size: 10 },
    { name: "Sub", kind: "directory", size: 4096 },
  ]);
  host.files["videos/a.txt"] = "héllo";
  strictEqual(files.readText("videos", "a.txt"), "héllo");
});

test("configStore.update retries a lost race and writes the change once", () => {
  host.config = { json: '{"n":1}', version: "v1", writes: 0, racesLeft: 2 };
  let calls = 0;
  const written = configStore.update((c) => {
    calls += 1;
    return { n: c.n + 1 };
  });
  strictEqual(calls, 3);
  strictEqual(host.config.writes, 1);
  deepStrictEqual(written.config, { n: 2 });
  strictEqual(host.config.json, '{"n":2}');
});

test("configStore.update gives up after 8 lost races", () => {
  host.config = { json: "{}", version: "v1", writes: 0, racesLeft: 100 };
  throws(() => configStore.update((c) => c), (e) => e instanceof CommandError && e.message.startsWith("configuration changed"));
  strictEqual(host.config.writes, 0);
});

test("log and progress reach the host", () => {
  log.info("a", { b: 1 });
  progress.report(150, { step: "x" });
  deepStrictEqual(host.logs.at(-1), ["info", 'a {"b":1}']);
  deepStrictEqual(host.progress.at(-1), [100, '{"step":"x"}']);
});

test("UTF-8 without TextEncoder / TextDecoder, as in QuickJS", () => {
  const saved = [globalThis.TextEncoder, globalThis.TextDecoder];
  host.files["videos/u.txt"] = "Ça va ? 🎥";
  try {
    delete globalThis.TextEncoder;
    delete globalThis.TextDecoder;
    strictEqual(files.readText("videos", "u.txt"), "Ça va ? 🎥");
  } finally {
    [globalThis.TextEncoder, globalThis.TextDecoder] = saved;
  }
});

test("an async handler is a failed result, never a false success", async () => {
  const thrown = (run) => {
    try {
      return { ok: defineCommand(run).execute(command("{}")) };
    } catch (e) {
      return e;
    }
  };
  const resolved = thrown(async () => ({ success: true }));
  strictEqual(resolved.tag, "failed", JSON.stringify(resolved));
  strictEqual(resolved.val.includes("remove `async`"), true, resolved.val);
  const rejected = thrown(async () => {
    throw new Error("boom");
  });
  strictEqual(rejected.tag, "failed", JSON.stringify(rejected));
  // A plain function that throws stays an error result too.
  deepStrictEqual(thrown(() => { throw new Error("boom"); }), { tag: "failed", val: "boom" });
  // The rejected Promise was handled: no unhandled rejection ends the test run.
  await new Promise((r) => setImmediate(r));
});

test("reading a file asks about the folder it reads only (a config-only grant is enough)", async () => {
  // A fresh copy of the SDK: the engine probe runs once per instance.
  const sdk = await import("../index.js?config-only");
  host.freeBytesAsked = [];
  host.files["config/site.json"] = '{"a":1}';
  deepStrictEqual(sdk.files.readJson("config", "site.json"), { a: 1 });
  deepStrictEqual(host.freeBytesAsked, ["config"]);
});

test("an exception's frames in the project's sources follow its message", () => {
  // The table the build appends: bundle lines 10, 11, 20 come from src/.
  const table = { files: ["src/count.ts", "src/index.ts"], lines: [10, 1, 12, 11, 1, 13, 20, 0, 5] };
  // QuickJS's format; lines not in the table (SDK, libraries) are left out.
  const stack = [
    "    at countFiles (/index.ts:20:17)",
    "    at <anonymous> (/index.ts:11:9)",
    "    at execute (/index.ts:500:3)",
  ].join("\n");
  strictEqual(sourceFrames(stack, table), "\n    at countFiles (src/count.ts:5)\n    at <anonymous> (src/index.ts:13)");
  strictEqual(sourceFrames(stack, undefined), "");
  strictEqual(sourceFrames(undefined, table), "");
  // At most 8 frames, whatever the depth.
  const deep = Array.from({ length: 50 }, () => "    at f (/index.ts:10:1)").join("\n");
  strictEqual(sourceFrames(deep, table).split("\n").length, 9);
});

test("a handler's exception arrives with its source line when the build left a table", () => {
  const here = new Error().stack.split("\n")[1];
  const line = Number(/:(\d+):\d+\)?$/.exec(here)[1]);
  globalThis.__neoproSourceLines = { files: ["src/index.ts"], lines: [line + 6, 0, 42] };
  try {
    const handler = defineCommand(() => {
      const missing = undefined;
      return missing.length;
    });
    handler.execute(command("{}"));
  } catch (e) {
    strictEqual(e.tag, "failed");
    match(e.val, /^Cannot read properties of undefined \(reading 'length'\)\n    at (.*\()?src\/index\.ts:42\)?$/);
    return;
  } finally {
    delete globalThis.__neoproSourceLines;
  }
  throw new Error("the handler did not throw");
});

test("Math.random in a built component: reseeded per command, in [0, 1), different per command", () => {
  const original = Math.random;
  const draw = (...seed) => {
    reseedMathRandom(...seed);
    return Array.from({ length: 1000 }, () => Math.random());
  };
  try {
    const a = draw("cmd-1", 1796645541193, 0.97);
    deepStrictEqual(draw("cmd-1", 1796645541193, 0.97), a, "the same seed gives the same numbers");
    const b = draw("cmd-2", 1796645541193, 0.97);
    const c = draw("cmd-1", 1796645541194, 0.97);
    strictEqual(a[0] !== b[0] && a[0] !== c[0] && b[0] !== c[0], true);
    for (const x of [...a, ...b, ...c]) strictEqual(x >= 0 && x < 1, true, String(x));
    const mean = a.reduce((s, x) => s + x, 0) / a.length;
    strictEqual(Math.abs(mean - 0.5) < 0.05, true, `mean ${mean}`);
    // Node's own generator is left alone: the SDK reseeds only where the
    // build marked the bundle as a component.
    Math.random = original;
    defineCommand(() => 1).execute(command("{}"));
    strictEqual(Math.random, original);
  } finally {
    Math.random = original;
  }
});
