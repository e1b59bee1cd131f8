// The fake box's operations beyond files: archive, local-app, logs, power
// and services, each with the agent's grant checks, its input checks and
// its messages (runtime/src/host/{archive,agent_update,local_app,logs,
// services}.rs). What the real box does to the world — a unit started, a
// reboot or an agent switch scheduled for after the result, the web app
// notified — is recorded on the box for the test to assert.
import { createHash, createPublicKey, verify } from "node:crypto";
import { readTarGz } from "./tar.mjs";

const err = (tag, val) => ({ tag, val });

/** The agent's defaults (config.rs). */
const DEFAULT_MANAGED_SERVICES = ["neopro-app", "neopro-admin", "neopro-sync-agent", "neopro-runtime", "nginx", "hostapd"];
const DEFAULT_AGENT_SERVICE = "neopro-runtime";
const UPSTREAM_AGENT_UNIT = "neopro-sync-agent";
const MAX_LINES = 10000;
const MAX_TAIL_BYTES = 4 << 20;
const MAX_FOLLOW_UP_WAIT_SECS = 600;
const RESTART_WAIT_SECS = 30;
const DEFAULT_MAX_DOWNLOAD_SIZE = 1073741824;

// ---- versions (agent/version_order.rs) ----

function coreAndPre(version) {
  const withoutBuild = version.split("+")[0];
  const dash = withoutBuild.indexOf("-");
  return dash < 0 ? [withoutBuild, undefined] : [withoutBuild.slice(0, dash), withoutBuild.slice(dash + 1)];
}

function numbers(core) {
  const out = [];
  for (const raw of core.split(".")) {
    const part = raw.startsWith("v") ? raw.slice(1) : raw;
    if (part === "" || !/^\d+$/.test(part)) return undefined;
    out.push(BigInt(part));
  }
  return out;
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

function comparePre(a, b) {
  const left = a.split(".");
  const right = b.split(".");
  for (let i = 0; ; i++) {
    if (i >= left.length && i >= right.length) return 0;
    if (i >= left.length) return -1;
    if (i >= right.length) return 1;
    const x = left[i];
    const y = right[i];
    const xn = /^\d+$/.test(x);
    const yn = /^\d+$/.test(y);
    const order = xn && yn ? cmp(BigInt(x), BigInt(y)) : xn ? -1 : yn ? 1 : cmp(x, y);
    if (order !== 0) return order;
  }
}

/** -1, 0 or 1 as the agent orders versions; undefined when they cannot be ordered. */
export function compareVersions(a, b) {
  const [aCore, aPre] = coreAndPre(a.trim());
  const [bCore, bPre] = coreAndPre(b.trim());
  const x = numbers(aCore);
  const y = numbers(bCore);
  if (!x || !y) return undefined;
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const order = cmp(x[i] ?? 0n, y[i] ?? 0n);
    if (order !== 0) return order;
  }
  if (aPre === undefined && bPre === undefined) return 0;
  if (aPre === undefined) return 1;
  if (bPre === undefined) return -1;
  return comparePre(aPre, bPre);
}

const isOlder = (candidate, installed) => compareVersions(candidate, installed) === -1;

// ---- names and text ----

const isUnitName = (name) => name.length > 0 && name.length <= 255 && !name.startsWith("-") && /^[A-Za-z0-9:\-_.@\\]+$/.test(name);
const withoutService = (name) => (name.endsWith(".service") ? name.slice(0, -".service".length) : name);
const invalidUnit = (name) => err("invalid-input", `'${name}' is not a valid service name (letters, digits and :-_.@ only)`);

function checkLines(lines) {
  if (!(lines >= 1 && lines <= MAX_LINES)) throw err("invalid-input", `lines must be between 1 and ${MAX_LINES}, got ${lines}`);
}

/** The last `lines` lines of `text`, keeping its final newline (logs.rs). */
export function lastLines(text, lines) {
  const trimmed = text.endsWith("\n") ? text.slice(0, -1) : text;
  if (trimmed === "") return "";
  const all = trimmed.split("\n");
  let out = all.slice(Math.max(0, all.length - lines)).join("\n");
  if (text.endsWith("\n")) out += "\n";
  return out;
}

/** At most the last 4 MiB, cut at the first newline when cut (logs.rs). */
function tail(bytes, lines) {
  const start = Math.max(0, bytes.length - MAX_TAIL_BYTES);
  let text = Buffer.from(bytes.subarray(start)).toString("utf8");
  if (start > 0) {
    const nl = text.indexOf("\n");
    text = nl < 0 ? "" : text.slice(nl + 1);
  }
  return lastLines(text, lines);
}

// ---- release signatures (signing/releases.rs) ----

function publicKey(text) {
  const hex = text.trim().replace(/^ed25519:/, "");
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`updateKeys: '${text}' is not an ed25519 public key (64 hex digits, as UPDATE_TRUSTED_KEYS)`);
  // SPKI DER of an Ed25519 key: a fixed 12-byte prefix, then the key.
  return createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(hex, "hex")]), format: "der", type: "spki" });
}

/** Undefined when the release passes, else the SignatureError's kind and message. */
function releaseSignature(keys, version, sha, signature) {
  if (keys.length === 0) return undefined;
  const sig = (signature ?? "").trim();
  if (sig === "") {
    return ["not-permitted", "this box only installs signed updates (UPDATE_TRUSTED_KEYS in site.conf) and this update has no signature"];
  }
  if (!/^[0-9a-fA-F]{128}$/.test(sig)) return ["invalid-input", "the update signature must be 128 hex digits (ed25519)"];
  const text = Buffer.from(`neopro-update:${version}:${sha}`);
  if (keys.some((key) => verify(null, text, key, Buffer.from(sig, "hex")))) return undefined;
  return ["not-permitted", "the update signature does not match any key of UPDATE_TRUSTED_KEYS"];
}

// ---- archive extraction (store/extract.rs) ----

/** The path's parts, or throws the agent's refusal; [] for "./". */
function cleanParts(raw) {
  if (raw.startsWith("/")) throw err("not-permitted", `the archive entry '${raw}' has an absolute path; update archives must be relative`);
  const parts = [];
  for (const part of raw.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw err("not-permitted", `the archive entry '${raw}' contains '..'; it would be written outside the update`);
    parts.push(part);
  }
  return parts;
}

function linkStaysInside(entryParts, target) {
  if (target.startsWith("/")) return false;
  let depth = entryParts.length - 1;
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      depth -= 1;
      if (depth < 0) return false;
    } else depth += 1;
  }
  return true;
}

/**
 * Adds the operations to `box`. `fs` is the fake box's file store: its
 * `check(root, access)`, `lacks(line)`, `key(root, path)`, `notFound(key)`,
 * and the `files` / `dirs` / `links` maps keyed `root/path`.
 */
export function addOperations(box, options, fs) {
  const { grants, check, lacks, key, notFound, files, dirs, links } = fs;
  const managed = options.managedServices ?? DEFAULT_MANAGED_SERVICES;
  const agentUnit = options.agentService ?? DEFAULT_AGENT_SERVICE;
  const states = new Map(Object.entries(options.services ?? {}));
  const keys = (options.updateKeys ?? []).map(publicKey);
  const agent = { version: "0.0.0-test", ...(options.agent ?? {}) };

  /** Whether `n` names the agent: its unit or the upstream agent's name. */
  const isAgentName = (n) => withoutService(n) === withoutService(agentUnit) || withoutService(n) === UPSTREAM_AGENT_UNIT;

  /** Things the box does once the command's result is delivered. */
  box.followUps = [];
  /** `local-app.notify` calls that reached the web app: `{event, payload}`. */
  box.notifications = [];
  /** systemctl calls: `{action, unit}`. */
  box.serviceCalls = [];
  /** The state of a unit as `services.status` reads it. */
  box.serviceState = (unit) => states.get(withoutService(unit)) ?? "inactive";

  function requireService(unit) {
    if (!isUnitName(unit)) throw invalidUnit(unit);
    const agentName = isAgentName(unit);
    const covers = (s) => withoutService(s) === withoutService(unit) || (agentName && isAgentName(s));
    if (!(grants.services ?? []).some(covers)) throw lacks(`services containing "${unit}"`);
    if (!managed.some(covers)) {
      throw err("not-permitted", `service '${unit}' is not managed by the agent on this box (MANAGED_SERVICES in site.conf: ${managed.join(", ")})`);
    }
    return agentName ? agentUnit : unit;
  }

  function systemctl(action, unit, state) {
    const failure = options.serviceFailures?.[withoutService(unit)];
    box.serviceCalls.push({ action, unit });
    if (failure !== undefined) throw err("failed", `systemctl ${action} ${unit} failed: ${failure}`);
    if (state) states.set(withoutService(unit), state);
  }

  box.services = {
    start(unit) {
      systemctl("start", requireService(unit), "active");
    },
    stop(unit) {
      const real = requireService(unit);
      if (isAgentName(unit)) {
        throw err("not-permitted", `the agent does not stop its own unit ${unit} (it could not be started again remotely); restart it instead`);
      }
      systemctl("stop", real, "inactive");
    },
    restart(unit) {
      const real = requireService(unit);
      if (isAgentName(unit)) {
        box.followUps.push({ action: "restart", unit: real, waitSecs: RESTART_WAIT_SECS });
        return;
      }
      systemctl("restart", real, "active");
    },
    status(unit) {
      return box.serviceState(requireService(unit));
    },
    isAgent: (unit) => isAgentName(unit),
    settleSecs: () => options.settleSecs ?? 10,
    healthCheck() {
      if ((grants.services ?? []).length === 0) throw lacks("services (at least one unit)");
      const health = options.health;
      if (health === undefined) return undefined;
      if (health === "down") throw err("failed", `the health URL ${options.healthUrl ?? "http://localhost/health"} did not answer: connection refused`);
      return health;
    },
  };

  box.power = {
    scheduleReboot(delaySecs) {
      if (grants["may-reboot"] !== true) throw lacks("may-reboot = true");
      const waitSecs = Math.min(Math.max(delaySecs, 1), MAX_FOLLOW_UP_WAIT_SECS);
      box.followUps.push({ action: "reboot", waitSecs });
    },
  };

  box.localApp = {
    notify(event, payload) {
      if (grants["local-app"] !== true) throw lacks("local-app = true");
      if (!(event.length > 0 && event.length <= 64 && /^[a-z0-9_]+$/.test(event))) {
        throw err("invalid-input", `'${event}' is not a valid event name (a-z, 0-9 and '_')`);
      }
      let parsed;
      if (payload !== undefined) {
        try {
          parsed = JSON.parse(payload);
        } catch (e) {
          throw err("invalid-input", `the payload is not valid JSON: ${e.message}`);
        }
      }
      if (options.localApp === "down") {
        throw err("failed", `the local web app at ${options.localAppUrl ?? "http://localhost:3000"} was not notified: connection refused`);
      }
      box.notifications.push({ event, payload: parsed });
    },
  };

  box.logsHost = {
    journalTail(unit, lines) {
      if (!isUnitName(unit)) throw invalidUnit(unit);
      const units = grants.logs?.units ?? [];
      if (!units.some((u) => u === "*" || u === unit)) throw lacks(`logs.units containing "${unit}"`);
      checkLines(lines);
      const real = isAgentName(unit) ? agentUnit : unit;
      return tail(new TextEncoder().encode(options.journal?.[real] ?? options.journal?.[withoutService(real)] ?? ""), lines);
    },
    agentLogTail(lines) {
      if (grants.logs?.["agent-log"] !== true) throw lacks("logs.agent-log = true");
      checkLines(lines);
      if (options.agentLog === undefined) {
        throw err("not-found", `the agent log ${options.agentLogPath ?? "/home/pi/neopro/logs/sync-agent.log"} does not exist yet`);
      }
      return tail(new TextEncoder().encode(options.agentLog), lines);
    },
    fileTail(root, path, lines) {
      check(root, "ro");
      checkLines(lines);
      const k = key(root, path);
      const data = files.get(k);
      if (!data) throw notFound(k);
      return tail(data, lines);
    },
  };

  const sourceFile = (root, path) => {
    const k = key(root, path);
    const data = files.get(k);
    if (!data) throw notFound(k);
    return data;
  };
  const sha256 = (data) => createHash("sha256").update(data).digest("hex");
  const installedVersion = () => {
    const text = (p) => (files.has(`neopro-root/${p}`) ? Buffer.from(files.get(`neopro-root/${p}`)).toString("utf8") : undefined);
    const json = (p) => {
      try {
        return JSON.parse(text(p) ?? "null");
      } catch {
        return null;
      }
    };
    return (
      json("release.json")?.version || json("webapp/version.json")?.version || text("VERSION")?.trim() || json("webapp/package.json")?.version || "unknown"
    );
  };

  box.archive = {
    verifySignature(root, path, version, signature) {
      check(root, "ro");
      const sha = sha256(sourceFile(root, path));
      const refused = releaseSignature(keys, version, sha, signature);
      if (refused) throw err(...refused);
      return sha;
    },
    checkAppRelease(version) {
      check("neopro-root", "ro");
      const installed = installedVersion();
      if (!options.allowDowngrade && isOlder(version, installed)) {
        throw err(
          "not-permitted",
          `refusing to install ${version}: it is older than the installed ${installed}. Downgrades are refused unless UPDATE_ALLOW_DOWNGRADE=true in site.conf`,
        );
      }
    },
    extractTarGz(srcRoot, srcPath, destRoot, destPath, skip) {
      check(srcRoot, "ro");
      check(destRoot, "rw");
      const data = sourceFile(srcRoot, srcPath);
      const dest = key(destRoot, destPath);
      if (files.has(dest) || dirs.has(dest) || links.has(dest)) {
        throw err("invalid-input", `${destRoot}/${destPath} already exists; an archive is extracted into a new folder`);
      }
      const maxBytes = options.maxExtractBytes ?? DEFAULT_MAX_DOWNLOAD_SIZE * 4;
      const skipped = skip.map((s) => {
        try {
          return cleanParts(s).join("/");
        } catch {
          return "";
        }
      }).filter((s) => s !== "");
      const made = { files: [], dirs: [], links: [] };
      const report = { files: 0, bytes: 0, skipped: [] };
      const undo = () => {
        for (const f of made.files) files.delete(f);
        for (const l of made.links) links.delete(l);
        for (const d of made.dirs) dirs.delete(d);
      };
      const mkdirs = (k) => {
        const parts = k.split("/");
        for (let i = 1; i <= parts.length; i++) {
          const d = parts.slice(0, i).join("/");
          if (!dirs.has(d)) {
            dirs.add(d);
            made.dirs.push(d);
          }
        }
      };
      try {
        mkdirs(dest);
        for (const entry of readTarGz(data)) {
          const parts = cleanParts(entry.path);
          if (parts.length === 0) continue;
          const rel = parts.join("/");
          if (skipped.some((s) => rel === s || rel.startsWith(s + "/"))) {
            if (report.skipped.length < 100) report.skipped.push(rel);
            continue;
          }
          for (let i = 1; i < parts.length; i++) {
            const above = parts.slice(0, i).join("/");
            if (links.has(`${dest}/${above}`)) {
              throw err("not-permitted", `the archive entry '${rel}' lies under '${above}', a link made by an earlier entry; entries go into real folders only`);
            }
          }
          const target = `${dest}/${rel}`;
          const parent = target.slice(0, target.lastIndexOf("/"));
          const linkOut = () => err("not-permitted", `the archive entry '${rel}' is a link to '${entry.target}', which leads outside the update`);
          const special = (kind) => err("not-permitted", `the archive entry '${rel}' is a ${kind}; only files, folders and links are allowed`);
          if (dirs.has(target) && entry.kind !== "directory") {
            throw err("io", `cannot write '${rel}': a folder of the same name is already there`);
          }
          switch (entry.kind) {
            case "directory":
              mkdirs(target);
              break;
            case "file": {
              if (report.bytes + entry.data.length > maxBytes) throw err("too-large", `the archive holds more than ${maxBytes} bytes`);
              mkdirs(parent);
              files.set(target, entry.data);
              made.files.push(target);
              report.files += 1;
              report.bytes += entry.data.length;
              break;
            }
            case "symlink":
              if (entry.target === "" || !linkStaysInside(parts, entry.target)) throw linkOut();
              mkdirs(parent);
              links.set(target, entry.target);
              made.links.push(target);
              break;
            case "hardlink": {
              let from;
              try {
                from = cleanParts(entry.target).join("/");
              } catch {
                throw linkOut();
              }
              if (from === "" || !files.has(`${dest}/${from}`)) throw linkOut();
              mkdirs(parent);
              files.set(target, files.get(`${dest}/${from}`));
              made.files.push(target);
              report.files += 1;
              break;
            }
            case "device":
              throw special("device");
            case "fifo":
              throw special("FIFO");
            case "sparse":
              throw special("sparse file");
            default:
              throw special("special entry");
          }
        }
      } catch (e) {
        undo();
        throw e;
      }
      return { files: BigInt(report.files), bytes: BigInt(report.bytes), skipped: report.skipped };
    },
  };

  // agent-update (runtime/src/host/agent_update.rs; `archive` in 0.1)
  box.agentUpdate = {
    rollbackAgentRelease(version) {
      if (grants["agent-update"] !== true) throw lacks("agent-update = true");
      if (version !== agent.version) return undefined;
      if (agent.previous === undefined) {
        throw err("not-found", `nothing rolled back: agent ${version} is running but there is no record of the agent it replaced`);
      }
      box.followUps.push({ action: "agent-rollback", version: agent.previous });
      return agent.previous;
    },
    stageAgentRelease(root, path, version, signature, _deploymentId) {
      if (grants["agent-update"] !== true) throw lacks("agent-update = true");
      check(root, "ro");
      const data = sourceFile(root, path);
      let first;
      try {
        first = readTarGz(data)[0]?.path.replace(/^\.\//, "");
      } catch {
        first = undefined;
      }
      if (first !== "agent-release.json") return undefined;
      const refuse = (message) => err("not-permitted", `agent release ${version} refused: ${message}`);
      if (keys.length === 0) throw refuse("this box installs an agent release only when it is signed, and no UPDATE_TRUSTED_KEYS are set in site.conf");
      const refused = releaseSignature(keys, version, sha256(data), signature);
      if (refused) throw err(refused[0], `agent release ${version} refused: ${refused[1]}`);
      const order = compareVersions(version, agent.version);
      if (order === undefined) throw refuse(`the versions ${version} and ${agent.version} cannot be ordered`);
      if (order === 0) throw refuse(`this box runs agent ${agent.version} already`);
      if (order < 0 && !options.allowDowngrade) {
        throw refuse(`it is older than the running agent ${agent.version} (set UPDATE_ALLOW_DOWNGRADE=true in site.conf to allow a downgrade)`);
      }
      if (!options.allowDowngrade && agent.highest !== undefined && isOlder(version, agent.highest)) {
        throw refuse(`this box already committed agent ${agent.highest}, which is newer (set UPDATE_ALLOW_DOWNGRADE=true in site.conf to allow a downgrade)`);
      }
      box.followUps.push({ action: "agent-switch", version });
      return version;
    },
  };
}
