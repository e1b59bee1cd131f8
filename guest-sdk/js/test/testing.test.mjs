// The test kit (@neopro/guest-sdk/testing): handlers run in Node against a
// fake box whose grants refuse what the agent refuses, with its messages.
import { test } from "node:test";
import { deepStrictEqual, strictEqual } from "node:assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CommandError, configStore, defineCommand, files, log, progress, system } from "../index.js";
import { fakeBox } from "../testing/index.js";
import { fetch } from "neopro:agent/download@0.2.0";

const listing = defineCommand((data) => {
  const found = files.list("videos", data.folder ?? "").filter((e) => e.kind === "file");
  log.info(`${found.length} videos`);
  progress.report(100, { done: true });
  return { videos: found.length, bytes: found.reduce((s, e) => s + e.size, 0) };
});

test("a handler runs on a box made from its manifest", () => {
  const dir = mkdtempSync(join(tmpdir(), "neopro-kit-"));
  try {
    const manifest = join(dir, "video-stats.toml");
    writeFileSync(manifest, 'name = "video-stats"\nversion = "0.1.0"\ncommands = ["video_stats"]\n\n[grants]\nfiles = { videos = "ro" } # the library\n');
    const box = fakeBox({ manifest, files: { "videos/Match/but.mp4": "0123456789", "videos/Match/arret.mp4": "01234", "videos/Match/Sub/x.mp4": "1" } });
    deepStrictEqual(box.run(listing, { folder: "Match" }), { ok: true, result: { videos: 2, bytes: 15 } });
    deepStrictEqual(box.logs, [{ level: "info", message: "2 videos" }]);
    deepStrictEqual(box.progress, [{ percent: 100, detail: { done: true } }]);
    deepStrictEqual(box.run(listing, { folder: "Nope" }), { ok: false, kind: "not-found", message: "videos/Nope does not exist" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("grants are enforced with the agent's messages", () => {
  const box = fakeBox({ name: "probe", grants: { files: { videos: "ro" } }, files: { "config/a.json": "{}" } });
  deepStrictEqual(box.run(defineCommand(() => files.readJson("config", "a.json"))), {
    ok: false,
    kind: "not-permitted",
    message: `component 'probe' has no access to 'config' (missing grant files.config = "ro")`,
  });
  deepStrictEqual(box.run(defineCommand(() => { files.writeJson("videos", "x.json", {}); return {}; })), {
    ok: false,
    kind: "not-permitted",
    message: `component 'probe' has read-only access to 'videos' (grant files.videos = "rw" to write)`,
  });
  deepStrictEqual(box.run(defineCommand(() => system.version())), {
    ok: false,
    kind: "not-permitted",
    message: "component 'probe' lacks the grant system = true",
  });
  deepStrictEqual(box.run(defineCommand(() => configStore.read() ?? {})), {
    ok: false,
    kind: "not-permitted",
    message: `component 'probe' lacks the grant config-store = "ro"`,
  });
  // The agent's kind (host/roots.rs): leaving the root is not-permitted.
  deepStrictEqual(box.run(defineCommand(() => files.list("videos", "../etc"))), {
    ok: false,
    kind: "not-permitted",
    message: "path '../etc' leaves its root ('..' is not allowed)",
  });
});

test("a config-only grant reads config files and the configuration store writes with rw", () => {
  const reader = fakeBox({ grants: { files: { config: "ro" } }, files: { "config/site.json": '{"club":"X"}' } });
  deepStrictEqual(reader.run(defineCommand(() => files.readJson("config", "site.json"))), { ok: true, result: { club: "X" } });
  const writer = fakeBox({ grants: { "config-store": "rw" }, config: { n: 1 } });
  const bump = defineCommand(() => configStore.update((c) => ({ n: (c?.n ?? 0) + 1 })).config);
  deepStrictEqual(writer.run(bump), { ok: true, result: { n: 2 } });
  deepStrictEqual(writer.config(), { n: 2 });
  const readOnly = fakeBox({ name: "ro", grants: { "config-store": "ro" }, config: {} });
  deepStrictEqual(readOnly.run(bump), {
    ok: false,
    kind: "not-permitted",
    message: `component 'ro' may only read the configuration store (grant config-store = "rw" to write)`,
  });
});

test("downloads: hosts and checksum checked, the file written", () => {
  const url = "https://files.example.org/a.mp4";
  const box = fakeBox({
    name: "dl",
    grants: { files: { videos: "rw" }, download: { hosts: ["*.example.org"] } },
    downloads: { [url]: "video" },
  });
  const get = (u, sha256) => defineCommand(() => {
    const out = fetch({ url: u, root: "videos", path: "a.mp4", sha256 });
    return { bytes: Number(out.bytes) };
  });
  deepStrictEqual(box.run(get(url)), { ok: true, result: { bytes: 5 } });
  strictEqual(box.files()["videos/a.mp4"], "video");
  strictEqual(box.run(get(url, "00")).kind, "checksum-mismatch");
  deepStrictEqual(box.run(get("https://evil.test/x")), {
    ok: false,
    kind: "not-permitted",
    message: `component 'dl' may not download from 'evil.test' (add "evil.test" to grants.download.hosts)`,
  });
});

test("an exception outside a CommandError is a failed result; a CommandError keeps its kind", () => {
  const box = fakeBox();
  deepStrictEqual(box.run(defineCommand(() => { throw CommandError.tooLarge("big"); })), { ok: false, kind: "too-large", message: "big" });
  strictEqual(box.run(defineCommand(() => { throw new TypeError("oops"); })).kind, "failed");
});
