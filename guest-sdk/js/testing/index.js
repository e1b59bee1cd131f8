// @neopro/guest-sdk/testing: run a handler in Node, in milliseconds,
// against a fake box: files under named roots, configuration.json,
// downloads, log and progress, and (operations.mjs) archives, the local
// web app, logs, power and services, with the manifest's grants enforced
// as the agent enforces them (same refusals, same messages). Load the fake
// host with `node --import @neopro/guest-sdk/testing/register`.
//
//     const box = fakeBox({ manifest: "video-stats.toml", files: { "videos/Match/a.mp4": "0123" } });
//     const { result } = box.run(handler, { folder: "Match" });
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { addOperations } from "./operations.mjs";

export { tarGz } from "./tar.mjs";
export { compareVersions } from "./operations.mjs";

const ROOTS = ["videos", "config", "backups", "neopro-root", "staging", "logs", "hostapd"];
const KINDS = ["invalid-input", "not-permitted", "not-found", "checksum-mismatch", "too-large", "timeout", "io", "failed"];

const err = (tag, val) => ({ tag, val });

/** Grants from a manifest's text: the subset of TOML manifests use (see
 * the README): `key = value` lines with strings, numbers, booleans,
 * arrays and inline tables, under `[grants]` and `[grants.<name>]`. */
export function parseManifest(text) {
  const manifest = { name: undefined, grants: {} };
  let section = "";
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = stripComment(raw).trim();
    if (line === "") return;
    const header = /^\[([a-z0-9.-]+)\]$/.exec(line);
    if (header) {
      section = header[1];
      return;
    }
    const kv = /^([a-z0-9-]+)\s*=\s*(.+)$/.exec(line);
    if (!kv) throw new Error(`manifest line ${i + 1}: the test kit cannot read \`${raw.trim()}\`; pass grants: {...} to fakeBox instead`);
    const value = tomlValue(kv[2], i + 1);
    if (section === "" && kv[1] === "name") manifest.name = value;
    else if (section === "grants") manifest.grants[kv[1]] = value;
    else if (section.startsWith("grants.")) (manifest.grants[section.slice(7)] ??= {})[kv[1]] = value;
  });
  return manifest;
}

/** The line without its `# comment` (a `#` inside a string stays). */
function stripComment(line) {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '"' && line[i - 1] !== "\\") quoted = !quoted;
    else if (line[i] === "#" && !quoted) return line.slice(0, i);
  }
  return line;
}

/** One TOML value: string, integer, boolean, array or inline table. */
function tomlValue(text, line) {
  let at = 0;
  const fail = (what) => {
    throw new Error(`manifest line ${line}: cannot read ${what} in ${text.trim()}`);
  };
  const space = () => {
    while (/\s/.test(text[at] ?? "")) at++;
  };
  const value = () => {
    space();
    const c = text[at];
    if (c === '"') {
      const m = /^"(?:[^"\\]|\\.)*"/.exec(text.slice(at));
      if (!m) fail("a string");
      at += m[0].length;
      return JSON.parse(m[0]);
    }
    if (c === "[") {
      at++;
      const out = [];
      for (;;) {
        space();
        if (text[at] === "]") return at++, out;
        out.push(value());
        space();
        if (text[at] === ",") at++;
        else if (text[at] !== "]") fail("an array");
      }
    }
    if (c === "{") {
      at++;
      const out = {};
      for (;;) {
        space();
        if (text[at] === "}") return at++, out;
        const m = /^"?([a-z0-9-]+)"?\s*=/.exec(text.slice(at));
        if (!m) fail("an inline table");
        at += m[0].length;
        out[m[1]] = value();
        space();
        if (text[at] === ",") at++;
        else if (text[at] !== "}") fail("an inline table");
      }
    }
    const m = /^(true|false|-?\d[\d_]*)/.exec(text.slice(at));
    if (!m) fail("the value");
    at += m[0].length;
    return m[0] === "true" ? true : m[0] === "false" ? false : Number(m[0].replace(/_/g, ""));
  };
  const out = value();
  space();
  if (at !== text.length) fail("what follows the value");
  return out;
}

/** The agent's check of `root/path` (host/roots.rs): absolute or `..` is
 * not-permitted, NUL or the root itself invalid-input. */
function clean(path, allowRoot) {
  if (path.includes("\0")) throw err("invalid-input", `path '${path}' contains a NUL byte`);
  if (path.startsWith("/")) throw err("not-permitted", `path '${path}' is absolute; paths are relative to their root`);
  const parts = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw err("not-permitted", `path '${path}' leaves its root ('..' is not allowed)`);
    parts.push(part);
  }
  if (parts.length === 0 && !allowRoot) throw err("invalid-input", "an empty path names the root itself, which cannot be used here");
  return parts.join("/");
}

const bytes = (v) => (typeof v === "string" ? new TextEncoder().encode(v) : new Uint8Array(v));

/**
 * A fake box. `manifest`: path of the component's .toml (its name and
 * `[grants]` are used), or `grants` (and `name`) given directly. `files`:
 * `{"videos/Match/a.mp4": "contents" | Uint8Array}`; `config`: the
 * configuration.json document (any JSON value) or undefined for none;
 * `downloads`: `{url: contents}` that `download.fetch` serves.
 */
export function fakeBox(options = {}) {
  const fromFile = options.manifest ? parseManifest(readFileSync(options.manifest, "utf8")) : { grants: {} };
  const name = options.name ?? fromFile.name ?? "component";
  const grants = options.grants ?? fromFile.grants;
  for (const root of Object.keys(grants.files ?? {})) {
    if (!ROOTS.includes(root)) throw new Error(`grant files.${root}: no such root (one of ${ROOTS.join(", ")})`);
  }
  const files = new Map();
  const dirs = new Set();
  /** Symbolic links an extracted archive made: `root/path` → target. */
  const links = new Map();
  const addDirs = (key) => {
    const parts = key.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  };
  for (const [key, value] of Object.entries(options.files ?? {})) {
    files.set(key, bytes(value));
    addDirs(key);
  }
  for (const root of ROOTS) dirs.add(root);
  let config = options.config === undefined ? undefined : JSON.stringify(options.config);
  let configVersion = 0;

  const lacks = (line) => err("not-permitted", `component '${name}' lacks the grant ${line}`);
  function check(root, access) {
    if (!ROOTS.includes(root)) throw new TypeError(`unknown enum case: ${root}`);
    const granted = grants.files?.[root];
    if (granted === "rw" || (granted === "ro" && access === "ro")) return;
    if (granted === "ro") {
      throw err("not-permitted", `component '${name}' has read-only access to '${root}' (grant files.${root} = "rw" to write)`);
    }
    throw err("not-permitted", `component '${name}' has no access to '${root}' (missing grant files.${root} = "${access}")`);
  }
  const key = (root, path, allowRoot = false) => {
    const p = clean(path, allowRoot);
    return p === "" ? root : `${root}/${p}`;
  };
  const notFound = (k) => err("not-found", `${k} does not exist`);
  const under = (k) => [...files.keys()].filter((f) => f.startsWith(k + "/"));

  const fs = {
    read(root, path, maxBytes) {
      check(root, "ro");
      const k = key(root, path);
      const data = files.get(k);
      if (!data) throw notFound(k);
      if (BigInt(data.length) > BigInt(maxBytes)) throw err("too-large", `${k} is ${data.length} bytes, more than the ${maxBytes} allowed`);
      return data.slice();
    },
    writeAtomic(root, path, contents) {
      check(root, "rw");
      const k = key(root, path);
      if (!dirs.has(k.slice(0, k.lastIndexOf("/")))) throw notFound(k.slice(0, k.lastIndexOf("/")));
      files.set(k, bytes(contents));
    },
    removeFile(root, path) {
      check(root, "rw");
      const k = key(root, path);
      if (!files.delete(k)) throw notFound(k);
    },
    rename(root, from, to) {
      check(root, "rw");
      const a = key(root, from);
      const b = key(root, to);
      if (!files.has(a)) throw notFound(a);
      files.set(b, files.get(a));
      files.delete(a);
      addDirs(b);
    },
    listDir(root, path) {
      check(root, "ro");
      const k = key(root, path, true);
      if (!dirs.has(k)) throw notFound(k);
      const names = new Map();
      for (const f of files.keys()) {
        if (f.startsWith(k + "/") && !f.slice(k.length + 1).includes("/")) {
          names.set(f.slice(k.length + 1), { kind: "file", size: BigInt(files.get(f).length) });
        }
      }
      for (const d of dirs) {
        if (d.startsWith(k + "/") && !d.slice(k.length + 1).includes("/")) names.set(d.slice(k.length + 1), { kind: "directory", size: 4096n });
      }
      for (const [l, target] of links) {
        if (l.startsWith(k + "/") && !l.slice(k.length + 1).includes("/")) names.set(l.slice(k.length + 1), { kind: "symlink", size: BigInt(target.length) });
      }
      return [...names.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, e]) => ({ name: n, ...e }));
    },
    stat(root, path) {
      check(root, "ro");
      const k = key(root, path, true);
      if (files.has(k)) return { kind: "file", size: BigInt(files.get(k).length), modifiedSecs: 0n };
      if (dirs.has(k)) return { kind: "directory", size: 4096n, modifiedSecs: 0n };
      throw notFound(k);
    },
    sha256(root, path) {
      check(root, "ro");
      const k = key(root, path);
      if (!files.has(k)) throw notFound(k);
      return createHash("sha256").update(files.get(k)).digest("hex");
    },
    mkdir(root, path) {
      check(root, "rw");
      const k = key(root, path);
      dirs.add(k);
      addDirs(k);
    },
    copyTree(fromRoot, from, toRoot, to) {
      check(fromRoot, "ro");
      check(toRoot, "rw");
      const a = key(fromRoot, from);
      const b = key(toRoot, to);
      if (!dirs.has(a) && !files.has(a)) throw notFound(a);
      let copied = 0n;
      for (const f of files.has(a) ? [a] : under(a)) {
        const target = b + f.slice(a.length);
        files.set(target, files.get(f).slice());
        addDirs(target);
        copied += BigInt(files.get(f).length);
      }
      return copied;
    },
    removeTree(root, path) {
      check(root, "rw");
      const k = key(root, path);
      if (!dirs.has(k)) throw notFound(k);
      for (const f of under(k)) files.delete(f);
      for (const d of [...dirs]) if (d === k || d.startsWith(k + "/")) dirs.delete(d);
    },
    freeBytes(root) {
      check(root, "ro");
      return BigInt(options.freeBytes ?? 1e12);
    },
  };

  const box = {
    name,
    grants,
    /** Log lines, `{level, message}`. */
    logs: [],
    /** Progress reports, `{percent, detail}` (detail parsed from JSON). */
    progress: [],
    fs,
    /** The files as `{"root/path": string}` (UTF-8 decoded). */
    files() {
      return Object.fromEntries([...files.entries()].map(([k, v]) => [k, new TextDecoder().decode(v)]));
    },
    /** The configuration.json document (parsed), undefined when none. */
    config() {
      return config === undefined ? undefined : JSON.parse(config);
    },
    configRead() {
      if (grants["config-store"] !== "ro" && grants["config-store"] !== "rw") throw lacks('config-store = "ro"');
      return { json: config, version: `v${configVersion}`, configHash: createHash("sha256").update(config ?? "").digest("hex") };
    },
    configWrite(json, expectedVersion) {
      if (grants["config-store"] === "ro") {
        throw err("not-permitted", `component '${name}' may only read the configuration store (grant config-store = "rw" to write)`);
      }
      if (grants["config-store"] !== "rw") throw lacks('config-store = "rw"');
      if (expectedVersion !== `v${configVersion}`) throw err("failed", "configuration changed since it was read; read it again");
      JSON.parse(json);
      config = json;
      configVersion += 1;
      return box.configRead();
    },
    reportProgress(percent, detail) {
      box.progress.push({ percent, detail: detail === "" ? undefined : JSON.parse(detail) });
    },
    system(what) {
      if (grants.system !== true) throw lacks("system = true");
      const values = {
        version: { version: options.version ?? "0.0.0-test", source: "test kit" },
        info: { architecture: "aarch64", hostname: "neopro-test", interfaces: [], totalMemory: 1073741824n },
        metrics: { cpu: 1, memory: 10, temperature: 40, disk: 20, uptime: 3600n },
        networkDiagnostics: {},
      };
      return values[what];
    },
    download(request) {
      const host = (() => {
        try {
          return new URL(request.url).hostname;
        } catch {
          throw err("invalid-input", `not a URL: ${request.url}`);
        }
      })();
      const allowed = grants.download?.hosts;
      if (!grants.download) throw lacks("download");
      const covers = (p) => p === "*" || p === host || (p.startsWith("*.") && host.endsWith(p.slice(1)));
      if (!(allowed ?? []).some(covers)) {
        throw err("not-permitted", `component '${name}' may not download from '${host}' (add "${host}" to grants.download.hosts)`);
      }
      check(request.root, "rw");
      const body = options.downloads?.[request.url];
      if (body === undefined) throw err("failed", `${request.url}: 404 (no such download in the fake box)`);
      const data = bytes(body);
      if (request.maxBytes !== undefined && BigInt(data.length) > BigInt(request.maxBytes)) {
        throw err("too-large", `${request.url} is ${data.length} bytes, more than the ${request.maxBytes} allowed`);
      }
      const sha = createHash("sha256").update(data).digest("hex");
      if (request.sha256 && request.sha256.toLowerCase() !== sha) {
        throw err("checksum-mismatch", `${request.url}: sha256 ${sha}, expected ${request.sha256}`);
      }
      fs.writeAtomic(request.root, request.path, data);
      return { bytes: BigInt(data.length), sha256: sha };
    },
    /**
     * Runs `handler` (what `defineCommand` made) on this box: `{ ok: true,
     * result }` with the parsed result JSON, or `{ ok: false, kind,
     * message }` as the agent would report the error.
     */
    run(handler, data = {}, { commandType = "test", id = "test-1" } = {}) {
      const previous = globalThis.__neoproFakeBox;
      globalThis.__neoproFakeBox = box;
      try {
        const json = handler.execute({ id, commandType, data: typeof data === "string" ? data : JSON.stringify(data) });
        return { ok: true, result: JSON.parse(json) };
      } catch (e) {
        if (e && KINDS.includes(e.tag)) return { ok: false, kind: e.tag, message: e.val };
        throw e;
      } finally {
        globalThis.__neoproFakeBox = previous;
      }
    },
  };
  addOperations(box, options, { grants, check, lacks, key, notFound, files, dirs, links });
  return box;
}
