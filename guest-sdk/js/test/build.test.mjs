// The build step (build/cli.mjs) on throwaway projects: it type-checks
// before building and never leaves the previous build's signature behind.
import { test } from "node:test";
import { deepStrictEqual, doesNotMatch, match, strictEqual } from "node:assert";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const sdk = dirname(dirname(fileURLToPath(import.meta.url)));
const cli = join(sdk, "build", "cli.mjs");

/** A project as `component new --lang ts` lays it out, the SDK linked in. */
function project(source) {
  const dir = mkdtempSync(join(tmpdir(), "neopro-build-test-"));
  mkdirSync(join(dir, "src"));
  mkdirSync(join(dir, "node_modules", "@neopro"), { recursive: true });
  symlinkSync(sdk, join(dir, "node_modules", "@neopro", "guest-sdk"));
  cpSync(join(sdk, "..", "..", "wit"), join(dir, "wit"), { recursive: true });
  writeFileSync(join(dir, "demo.toml"), 'name = "demo"\nversion = "0.1.0"\ncommands = ["demo"]\n');
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { target: "ES2022", module: "ES2022", moduleResolution: "bundler", strict: true, noEmit: true, types: [] },
      include: ["src"],
    }),
  );
  writeFileSync(join(dir, "src", "index.ts"), source);
  return dir;
}

function build(dir) {
  const run = spawnSync(process.execPath, [cli, "build", "--out", "dist"], { cwd: dir, encoding: "utf8" });
  return { code: run.status, out: run.stdout, err: run.stderr };
}

const header = 'import { defineCommand, files } from "@neopro/guest-sdk";\n';

test("a type error stops the build, naming the file and line", () => {
  const dir = project(header + 'export const handler = defineCommand(() => { const n: number = "x"; return { n }; });\n');
  try {
    const { code, err } = build(dir);
    strictEqual(code, 2, err);
    match(err, /src\/index\.ts\(2,\d+\): error TS2322/);
    match(err, /type errors \(above\): the component was not built/);
    strictEqual(existsSync(join(dir, "dist", "demo.wasm")), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a misspelt folder name is a type error, not a panic at run time", () => {
  const dir = project(header + 'export const handler = defineCommand(() => files.list("video", ""));\n');
  try {
    const { code, err } = build(dir);
    strictEqual(code, 2, err);
    match(err, /Argument of type '"video"' is not assignable to parameter of type 'Root'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an async handler is refused at build time with the reason", () => {
  const dir = project(header + "export const handler = defineCommand(async () => ({ success: true }));\n");
  try {
    const { code, err } = build(dir);
    strictEqual(code, 2, err);
    match(err, /command handlers must be synchronous .*remove `async` and `await`/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a build removes the previous build's signature and embeds the source line table", () => {
  const dir = project(header + 'export const handler = defineCommand(() => ({ n: files.list("videos", "").length }));\n');
  try {
    mkdirSync(join(dir, "dist"));
    writeFileSync(join(dir, "dist", "demo.sig"), "old signature\n");
    const { code, out, err } = build(dir);
    strictEqual(code, 0, err);
    strictEqual(existsSync(join(dir, "dist", "demo.wasm")), true);
    strictEqual(existsSync(join(dir, "dist", "demo.sig")), false, "stale signature left behind");
    match(out, /removed .*demo\.sig, the signature of the previous build/);
    doesNotMatch(err, /error/i);
    // The table bundle-config.mjs appends: line 2 of src/index.ts is in it.
    const wasm = readFileSync(join(dir, "dist", "demo.wasm"), "latin1");
    const table = /globalThis\.__neoproSourceLines = (\{.*?\});/.exec(wasm);
    strictEqual(table !== null, true, "no source line table in the component");
    const { files: names, lines } = JSON.parse(table[1]);
    deepStrictEqual(names, ["src/index.ts"]);
    strictEqual(lines.length > 0 && lines.length % 3 === 0 && lines[2] === 2, true, table[1]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("two builds of the same source, in two folders, are byte-identical", () => {
  const source = header + 'export const handler = defineCommand(() => ({ n: files.list("videos", "").length, r: Math.random() }));\n';
  const first = project(source);
  const second = project(source);
  try {
    const a = build(first);
    strictEqual(a.code, 0, a.err);
    // The second build pins its own runtime again rather than reuse the
    // first one's from the cache.
    rmSync(join(sdk, "node_modules", ".cache", "neopro-guest-sdk"), { recursive: true, force: true });
    const b = build(second);
    strictEqual(b.code, 0, b.err);
    const sha = (dir) => createHash("sha256").update(readFileSync(join(dir, "dist", "demo.wasm"))).digest("hex");
    strictEqual(sha(first), sha(second));
  } finally {
    rmSync(first, { recursive: true, force: true });
    rmSync(second, { recursive: true, force: true });
  }
});
