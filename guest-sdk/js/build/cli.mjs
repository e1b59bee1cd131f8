#!/usr/bin/env node
// neopro-component build [--engine quickjs|spidermonkey] [--src FILE] [--out DIR]
//
// Builds the component of the project in the current folder: src/index.ts
// (or --src) against the neopro:agent `command` world, into
// dist/<name>.wasm with the manifest <name>.toml copied beside it, so
// `neopro-runtime run-component dist/<name>.wasm` works as it is. It first
// type-checks the project (`tsc --noEmit` on its tsconfig.json: a type
// error stops the build) and removes dist/<name>.sig, the signature of the
// previous build.
//
// QuickJS is the default engine: a ~1.8 MB component that compiles on a
// 1 GB Raspberry Pi. SpiderMonkey (--engine spidermonkey) runs heavy code
// faster but makes a 13 MB component whose first compile needs ~500 MB.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  process.stderr.write(`neopro-component: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const [task, ...rest] = argv;
  if (task !== "build") fail("usage: neopro-component build [--engine quickjs|spidermonkey] [--src FILE] [--out DIR]");
  const options = { engine: "quickjs", src: "src/index.ts", out: "dist" };
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i]?.replace(/^--/, "");
    if (!(key in options) || rest[i + 1] === undefined) fail(`unknown or incomplete option ${rest[i]}`);
    options[key] = rest[i + 1];
  }
  if (!["quickjs", "spidermonkey"].includes(options.engine)) fail(`engine must be quickjs or spidermonkey, not ${options.engine}`);
  return options;
}

/** The project's manifest: the one <name>.toml of the folder. */
function manifest(project) {
  const tomls = readdirSync(project).filter((f) => f.endsWith(".toml"));
  if (tomls.length !== 1) fail(`expected exactly one manifest <name>.toml in ${project}, found ${tomls.length}`);
  const text = readFileSync(join(project, tomls[0]), "utf8");
  const name = /^name\s*=\s*"([a-z0-9-]+)"/m.exec(text)?.[1];
  if (!name) fail(`${tomls[0]} has no name = "..." line`);
  return { file: join(project, tomls[0]), name };
}

/** The WIT to build against: the project's wit/ (vendored by `component
 * new`), else the nearest one above it (this repository's). */
function witDir(project) {
  for (let dir = project; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "wit", "world.wit"))) return join(dir, "wit");
    if (dirname(dir) === dir) fail(`no wit/world.wit in ${project} or above it`);
  }
}

/** `tsc --noEmit` on the project's tsconfig.json: a type error stops the
 * build (the bundler alone strips types without checking them). */
function typecheck(project, src) {
  const tsconfig = join(project, "tsconfig.json");
  if (!existsSync(tsconfig)) {
    if (/\.[cm]?tsx?$/.test(src)) fail(`no tsconfig.json in ${project}: the build type-checks ${src} with it`);
    return;
  }
  const tsc = join(dirname(dirname(fileURLToPath(import.meta.resolve("typescript")))), "bin", "tsc");
  const run = spawnSync(process.execPath, [tsc, "--noEmit", "--pretty", "false", "-p", tsconfig], {
    cwd: project,
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
  });
  if (run.status === 0) return;
  process.stderr.write(run.stdout + run.stderr);
  if (/not assignable to type 'NotAPromise'/.test(run.stdout)) {
    process.stderr.write(
      "neopro-component: a handler returns a Promise: command handlers must be synchronous " +
        "(host calls return their result directly); remove `async` and `await` from it\n",
    );
  }
  fail("type errors (above): the component was not built");
}

const options = parseArgs(process.argv.slice(2));
const project = process.cwd();
const { file: manifestFile, name } = manifest(project);
typecheck(project, options.src);
const out = resolve(project, options.out);
mkdirSync(out, { recursive: true });
const wasm = join(out, `${name}.wasm`);
// A signature of the previous build would refuse this one ("signed for
// another build"): sign again after building.
const signature = join(out, `${name}.sig`);
if (existsSync(signature)) {
  rmSync(signature);
  process.stdout.write(`removed ${signature}, the signature of the previous build: sign this one again\n`);
}
const jco = join(dirname(fileURLToPath(import.meta.resolve("@bytecodealliance/jco"))), "jco.js");
const args = [
  "--import", join(here, "preopens.mjs"), jco, "componentize", resolve(project, options.src),
  "--wit", witDir(project), "--world-name", "command", "-o", wasm,
  // Errors name src/*.ts lines: see bundle-config.mjs.
  "--bundle", "--bundle-config", join(here, "bundle-config.mjs"),
];
if (options.engine === "quickjs") {
  // Without it, the QuickJS build needs the component-model async ABI
  // (task.cancel), which the agent does not enable.
  args.push("--backend", "qjs", "--backend-qjs-disable-async");
} else {
  // The agent links no wasi:http; a command is not a fetch handler.
  args.push("--disable", "http", "fetch-event");
}
const started = Date.now();
const run = spawnSync(process.execPath, args, {
  stdio: ["ignore", "pipe", "pipe"],
  encoding: "utf8",
  env: { ...process.env, NEOPRO_PROJECT: project },
});
if (run.status !== 0) {
  process.stderr.write(run.stdout + run.stderr);
  fail(`building ${wasm} failed`);
}
copyFileSync(manifestFile, join(out, `${name}.toml`));
const size = readFileSync(wasm).length;
process.stdout.write(`${wasm} (${(size / 1e6).toFixed(1)} MB, ${options.engine}, ${((Date.now() - started) / 1000).toFixed(1)} s) and its manifest ${name}.toml\n`);
