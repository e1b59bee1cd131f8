// @neopro/guest-sdk: write NEOPRO command components in TypeScript or
// JavaScript. The same shape as the Rust SDK (neopro-guest-sdk): typed data
// in, JSON out, errors as the WIT `error` variant, logging, progress, and a
// configuration.json update that retries when another command wrote first.
//
// Engines differ in how they hand over WIT u64 values (a Number in QuickJS,
// a BigInt in SpiderMonkey): every wrapper here returns plain Numbers.

import * as hostLog from "neopro:agent/log@0.2.0";
import * as hostProgress from "neopro:agent/progress@0.2.0";
import * as hostFiles from "neopro:agent/files@0.2.0";
import * as hostSystem from "neopro:agent/system@0.2.0";
import * as hostConfig from "neopro:agent/config-store@0.2.0";

const KINDS = [
  "invalid-input",
  "not-permitted",
  "not-found",
  "checksum-mismatch",
  "too-large",
  "timeout",
  "io",
  "failed",
];

/** A command or host-call failure; `message` is what the operator reads. */
export class CommandError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "CommandError";
    this.kind = KINDS.includes(kind) ? kind : "failed";
  }
  /** The command data or an argument is malformed. */
  static invalidInput(message) { return new CommandError("invalid-input", message); }
  /** The manifest does not grant what the command needs; name the grant. */
  static notPermitted(message) { return new CommandError("not-permitted", message); }
  /** The thing asked for does not exist. */
  static notFound(message) { return new CommandError("not-found", message); }
  /** Bytes do not match the expected sha256. */
  static checksumMismatch(message) { return new CommandError("checksum-mismatch", message); }
  /** A size limit would be exceeded. */
  static tooLarge(message) { return new CommandError("too-large", message); }
  /** An operation ran past its time limit. */
  static timeout(message) { return new CommandError("timeout", message); }
  /** The box refused an operation (disk, kernel). */
  static io(message) { return new CommandError("io", message); }
  /** Anything else. */
  static failed(message) { return new CommandError("failed", message); }
  /** True for `not-found`: lets callers treat "missing" as a normal case. */
  isNotFound() { return this.kind === "not-found"; }
  /** The WIT value the host receives. */
  toWit() { return { tag: this.kind, val: this.message }; }
}

/** Any thrown value as a CommandError (host errors arrive as `{tag, val}`). */
export function toCommandError(thrown) {
  if (thrown instanceof CommandError) return thrown;
  const wit = thrown && typeof thrown === "object" && "payload" in thrown ? thrown.payload : thrown;
  if (wit && typeof wit === "object" && typeof wit.tag === "string" && KINDS.includes(wit.tag)) {
    return new CommandError(wit.tag, String(wit.val ?? ""));
  }
  if (thrown instanceof Error) {
    const where = sourceFrames(thrown.stack);
    return CommandError.failed((thrown.message || String(thrown)) + where);
  }
  return CommandError.failed(String(thrown));
}

/** At most this many frames of the author's code follow the message. */
const MAX_FRAMES = 8;
/** Each frame line is cut to this many characters. */
const MAX_FRAME_CHARS = 160;

/**
 * The frames of a stack that lie in the project's own sources, as
 * `\n    at name (src/index.ts:12)` lines. The build (build/bundle-config.mjs)
 * appends the table from bundle lines to source lines as
 * `globalThis.__neoproSourceLines`; without it (or for frames in
 * libraries) nothing is added.
 */
export function sourceFrames(stack, table = globalThis.__neoproSourceLines) {
  if (typeof stack !== "string" || !table || !Array.isArray(table.lines) || !Array.isArray(table.files)) return "";
  const lines = table.lines;
  const out = [];
  for (const frame of stack.split("\n")) {
    const m = /^\s*at (?:(.*?) \()?(?:.*?):(\d+)(?::\d+)?\)?\s*$/.exec(frame);
    if (!m) continue;
    const line = Number(m[2]);
    // The table's triples are sorted by bundle line: binary search.
    let lo = 0;
    let hi = lines.length / 3 - 1;
    let hit = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const at = lines[mid * 3];
      if (at === line) {
        hit = mid;
        break;
      }
      if (at < line) lo = mid + 1;
      else hi = mid - 1;
    }
    if (hit < 0) continue;
    const where = `${table.files[lines[hit * 3 + 1]]}:${lines[hit * 3 + 2]}`;
    const text = `    at ${m[1] ? `${m[1]} (${where})` : where}`;
    out.push(text.length > MAX_FRAME_CHARS ? text.slice(0, MAX_FRAME_CHARS - 1) + "…" : text);
    if (out.length === MAX_FRAMES) break;
  }
  return out.length === 0 ? "" : "\n" + out.join("\n");
}

/** Runs a host call, turning its error into a CommandError. */
function host(call) {
  try {
    return call();
  } catch (e) {
    throw toCommandError(e);
  }
}

const num = (v) => (v === undefined || v === null ? v : Number(v));

function text(args) {
  return args
    .map((a) => (typeof a === "string" ? a : a instanceof Error ? a.message : JSON.stringify(a)))
    .join(" ");
}

/** Lines in the agent's log. */
export const log = {
  debug: (...args) => hostLog.write("debug", text(args)),
  info: (...args) => hostLog.write("info", text(args)),
  warn: (...args) => hostLog.write("warn", text(args)),
  error: (...args) => hostLog.write("error", text(args)),
};

// QuickJS has no console: give code (and libraries) one that logs.
if (typeof globalThis.console === "undefined") {
  globalThis.console = { log: log.info, info: log.info, debug: log.debug, warn: log.warn, error: log.error };
}

/** Progress of long commands, forwarded to the server (the host throttles). */
export const progress = {
  report(percent, detail) {
    const p = Math.max(0, Math.min(100, Math.round(Number(percent) || 0)));
    host(() => hostProgress.report(p, detail === undefined || detail === null ? "" : JSON.stringify(detail)));
  },
};

// QuickJS has no TextEncoder / TextDecoder either.
const utf8 = {
  encode(text) {
    if (typeof TextEncoder !== "undefined") return new TextEncoder().encode(text);
    const bytes = [];
    for (const ch of text) {
      const c = ch.codePointAt(0);
      if (c < 0x80) bytes.push(c);
      else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63));
      else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
    return new Uint8Array(bytes);
  },
  decode(bytes) {
    if (typeof TextDecoder !== "undefined") return new TextDecoder().decode(bytes);
    let out = "";
    for (let i = 0; i < bytes.length; ) {
      const b = bytes[i];
      const need = b < 0x80 ? 0 : b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : b >= 0xc0 ? 1 : -1;
      let c = need === 0 ? b : need === 1 ? b & 31 : need === 2 ? b & 15 : b & 7;
      let ok = need >= 0 && i + need < bytes.length + (need === 0 ? 1 : 0);
      for (let k = 1; ok && k <= need; k++) {
        const n = bytes[i + k];
        if ((n & 0xc0) !== 0x80) ok = false;
        else c = (c << 6) | (n & 63);
      }
      if (ok) {
        out += String.fromCodePoint(c);
        i += need + 1;
      } else {
        out += "\ufffd";
        i += 1;
      }
    }
    return out;
  },
};
/** What `files.read` reads at most by default (the host caps it too). */
const READ_CAP = 16 * 1024 * 1024;

function entry(e) {
  return { name: e.name, kind: e.kind, size: num(e.size) };
}

/** Files under the named roots the manifest grants (`files = { videos = "ro" }`). */
export const files = {
  read: (root, path, maxBytes = READ_CAP) => host(() => hostFiles.read(root, path, u64(root, maxBytes))),
  readText: (root, path, maxBytes) => utf8.decode(files.read(root, path, maxBytes)),
  readJson(root, path, maxBytes) {
    const raw = files.readText(root, path, maxBytes);
    try {
      return JSON.parse(raw);
    } catch (e) {
      throw CommandError.invalidInput(`${path} is not valid JSON: ${e.message}`);
    }
  },
  writeAtomic: (root, path, contents) =>
    host(() => hostFiles.writeAtomic(root, path, typeof contents === "string" ? utf8.encode(contents) : contents)),
  writeJson: (root, path, value) => files.writeAtomic(root, path, JSON.stringify(value, null, 2)),
  removeFile: (root, path) => host(() => hostFiles.removeFile(root, path)),
  rename: (root, from, to) => host(() => hostFiles.rename(root, from, to)),
  list: (root, path) => host(() => hostFiles.listDir(root, path)).map(entry),
  stat(root, path) {
    const m = host(() => hostFiles.stat(root, path));
    return { kind: m.kind, size: num(m.size), modifiedSecs: num(m.modifiedSecs) };
  },
  exists(root, path) {
    try {
      files.stat(root, path);
      return true;
    } catch (e) {
      if (e instanceof CommandError && e.isNotFound()) return false;
      throw e;
    }
  },
  sha256: (root, path) => host(() => hostFiles.sha256(root, path)),
  mkdir: (root, path) => host(() => hostFiles.mkdir(root, path)),
  copyTree: (fromRoot, from, toRoot, to) => num(host(() => hostFiles.copyTree(fromRoot, from, toRoot, to))),
  removeTree: (root, path) => host(() => hostFiles.removeTree(root, path)),
  freeBytes: (root) => num(host(() => hostFiles.freeBytes(root))),
};

// A u64 argument: QuickJS takes a Number, SpiderMonkey a BigInt; both
// engines give BigInt a `typeof`, so tell them apart by what the host
// returned for a u64 once (SpiderMonkey hands BigInts back).
let u64IsBigInt;
// The probe asks about the folder the caller is about to touch, so it needs
// no grant beyond that folder's.
function u64(root, n) {
  if (u64IsBigInt === undefined) {
    u64IsBigInt = typeof host(() => hostFiles.freeBytes(root)) === "bigint";
  }
  return u64IsBigInt ? BigInt(n) : Number(n);
}

/** The box (grant `system = true`). */
export const system = {
  version: () => host(() => hostSystem.getVersion()),
  info() {
    const i = host(() => hostSystem.getInfo());
    return { ...i, cpuSpeedMhz: num(i.cpuSpeedMhz), totalMemory: num(i.totalMemory) };
  },
  metrics() {
    const m = host(() => hostSystem.getMetrics());
    return { ...m, uptime: num(m.uptime) };
  },
  networkDiagnostics: () => JSON.parse(host(() => hostSystem.networkDiagnostics())),
};

/** How many times `configStore.update` re-reads after losing a race (as the Rust SDK). */
const ATTEMPTS = 8;

function parseConfig(json) {
  if (json === undefined || json === null) return null;
  try {
    return JSON.parse(json);
  } catch (e) {
    throw CommandError.invalidInput(`configuration.json is not valid JSON: ${e.message}`);
  }
}

/** configuration.json (CONFIG_PATH), shared with concurrent commands. */
export const configStore = {
  /** The current document, or null when there is none yet. */
  read: () => parseConfig(host(() => hostConfig.read()).json),
  /**
   * Reads, applies `change` (given the current document or null), writes
   * back only if nobody wrote meanwhile, else retries. `change` may run more
   * than once, so it must have no side effects.
   */
  update(change) {
    let last;
    for (let i = 0; i < ATTEMPTS; i++) {
      const snapshot = host(() => hostConfig.read());
      const next = change(parseConfig(snapshot.json));
      try {
        const written = hostConfig.write(JSON.stringify(next), snapshot.version);
        return { configHash: written.configHash, config: next };
      } catch (e) {
        const err = toCommandError(e);
        if (err.kind === "failed" && err.message.startsWith("configuration changed")) {
          last = err;
          continue;
        }
        throw err;
      }
    }
    throw last ?? CommandError.failed("configuration kept changing; gave up");
  },
};

const ASYNC_HANDLER =
  "the handler returned a Promise (an async function?): command handlers must be synchronous " +
  "(the SDK's host calls return their result directly); remove `async` and `await` from the handler";

/**
 * Math.random for the rest of this command. The engine seeds its own
 * generator once, when the component is built (its state is then in the
 * snapshot: every run would draw the same numbers, and the build pins the
 * clock it reads so that builds are reproducible). Each command instead
 * gets a small non-cryptographic generator (sfc32) seeded from its command
 * id and the clocks at the time it runs. Not for secrets: there is no
 * cryptographic random source in a component.
 */
export function reseedMathRandom(commandId, now = Date.now(), fine = globalThis.performance?.now?.() ?? 0) {
  // cyrb128: four 32-bit words from the seed text.
  const text = `${commandId}|${now}|${fine}`;
  let h1 = 1779033703, h2 = 3144134277, h3 = 1013904242, h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  let a = (h1 ^ h2 ^ h3 ^ h4) >>> 0, b = (h2 ^ h1) >>> 0, c = (h3 ^ h1) >>> 0, d = (h4 ^ h1) >>> 0;
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 12; i++) next();
  // 53 random bits, as V8 and QuickJS give.
  Math.random = () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
}

const isThenable = (v) => v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";

/**
 * Makes the component's handler from `run(data, ctx)`: the command's data
 * parsed from JSON (`{}` when empty), the returned value sent back as the
 * result JSON, anything thrown sent as a WIT error (a CommandError keeps its
 * kind; any other exception is `failed` with its message).
 *
 *     export const handler = defineCommand<Data>((data, ctx) => ({ success: true }));
 */
export function defineCommand(run) {
  return {
    execute(command) {
      // Only in a built component (the build marks it): a test in Node
      // keeps Node's Math.random.
      if (globalThis.__neoproComponent === true) reseedMathRandom(command.id);
      try {
        const raw = command.data.trim() === "" ? "{}" : command.data;
        let data;
        try {
          data = JSON.parse(raw);
        } catch (e) {
          throw CommandError.invalidInput(`invalid data for command '${command.commandType}': ${e.message}`);
        }
        const result = run(data, { id: command.id, commandType: command.commandType });
        if (isThenable(result)) {
          // The agent calls the handler synchronously and host calls return
          // their result directly: a Promise can never be awaited here, and
          // JSON.stringify would turn it into a false success `{}`.
          result.then(undefined, () => {});
          throw CommandError.failed(ASYNC_HANDLER);
        }
        const json = JSON.stringify(result === undefined ? null : result);
        return json;
      } catch (e) {
        throw toCommandError(e).toWit();
      }
    },
  };
}
