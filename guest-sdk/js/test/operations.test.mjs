// The test kit's archive, local-app, logs, power and services: handlers
// that import them run on the fake box, refused as the agent refuses (its
// grants, its input checks, its messages), and what the box would do
// (units started, a reboot after the result, the web app notified) is
// recorded.
import { test } from "node:test";
import { deepStrictEqual, strictEqual } from "node:assert";
import { generateKeyPairSync, sign } from "node:crypto";
import { createHash } from "node:crypto";
import { defineCommand, files } from "../index.js";
import { compareVersions, fakeBox, parseManifest, tarGz } from "../testing/index.js";
import * as agentUpdate from "neopro:agent/agent-update@0.2.0";
import * as archive from "neopro:agent/archive@0.2.0";
import * as localApp from "neopro:agent/local-app@0.2.0";
import * as logs from "neopro:agent/logs@0.2.0";
import * as power from "neopro:agent/power@0.2.0";
import * as services from "neopro:agent/services@0.2.0";

const call = (fn) => defineCommand(() => fn() ?? null);

test("services: the manifest's units and MANAGED_SERVICES, the agent's own unit restarted after the result", () => {
  const box = fakeBox({ name: "svc", grants: { services: ["neopro-app", "nginx.service", "neopro-runtime"] }, managedServices: ["neopro-app", "neopro-runtime"] });
  deepStrictEqual(box.run(call(() => services.restart("neopro-app"))), { ok: true, result: null });
  deepStrictEqual(box.run(call(() => services.status("neopro-app.service"))), { ok: true, result: "active" });
  deepStrictEqual(box.run(call(() => services.stop("neopro-app"))), { ok: true, result: null });
  strictEqual(box.serviceState("neopro-app"), "inactive");
  deepStrictEqual(box.serviceCalls, [
    { action: "restart", unit: "neopro-app" },
    { action: "stop", unit: "neopro-app" },
  ]);
  deepStrictEqual(box.run(call(() => services.start("neopro-admin"))), {
    ok: false,
    kind: "not-permitted",
    message: `component 'svc' lacks the grant services containing "neopro-admin"`,
  });
  deepStrictEqual(box.run(call(() => services.start("nginx"))), {
    ok: false,
    kind: "not-permitted",
    message: "service 'nginx' is not managed by the agent on this box (MANAGED_SERVICES in site.conf: neopro-app, neopro-runtime)",
  });
  deepStrictEqual(box.run(call(() => services.start("x; reboot"))), {
    ok: false,
    kind: "invalid-input",
    message: "'x; reboot' is not a valid service name (letters, digits and :-_.@ only)",
  });
  // The upstream agent's name means this agent; it is restarted once the
  // result is delivered, never stopped.
  deepStrictEqual(box.run(call(() => services.restart("neopro-sync-agent"))), { ok: true, result: null });
  deepStrictEqual(box.followUps, [{ action: "restart", unit: "neopro-runtime", waitSecs: 30 }]);
  deepStrictEqual(box.run(call(() => services.stop("neopro-runtime"))), {
    ok: false,
    kind: "not-permitted",
    message: "the agent does not stop its own unit neopro-runtime (it could not be started again remotely); restart it instead",
  });
  deepStrictEqual(box.run(call(() => [services.isAgent("neopro-sync-agent.service"), services.isAgent("nginx"), services.settleSecs()])), {
    ok: true,
    result: [true, false, 10],
  });
});

test("services: a failing unit and the health check", () => {
  const box = fakeBox({ name: "svc", grants: { services: ["neopro-app"] }, serviceFailures: { "neopro-app": "exit status 1" }, health: 503 });
  deepStrictEqual(box.run(call(() => services.start("neopro-app"))), { ok: false, kind: "failed", message: "systemctl start neopro-app failed: exit status 1" });
  deepStrictEqual(box.run(call(() => services.healthCheck())), { ok: true, result: 503 });
  deepStrictEqual(fakeBox({ grants: { services: ["neopro-app"] } }).run(call(() => services.healthCheck())), { ok: true, result: null });
  deepStrictEqual(fakeBox({ name: "n", grants: {} }).run(call(() => services.healthCheck())), {
    ok: false,
    kind: "not-permitted",
    message: "component 'n' lacks the grant services (at least one unit)",
  });
  deepStrictEqual(fakeBox({ grants: { services: ["neopro-app"] }, health: "down" }).run(call(() => services.healthCheck())).kind, "failed");
});

test("power: a reboot is scheduled after the result, its wait clamped as the agent does", () => {
  const box = fakeBox({ name: "p", grants: { "may-reboot": true } });
  deepStrictEqual(box.run(call(() => power.scheduleReboot(0))), { ok: true, result: null });
  deepStrictEqual(box.run(call(() => power.scheduleReboot(5000))), { ok: true, result: null });
  deepStrictEqual(box.followUps, [{ action: "reboot", waitSecs: 1 }, { action: "reboot", waitSecs: 600 }]);
  deepStrictEqual(fakeBox({ name: "p", grants: {} }).run(call(() => power.scheduleReboot(10))), {
    ok: false,
    kind: "not-permitted",
    message: "component 'p' lacks the grant may-reboot = true",
  });
});

test("local-app: the event name and JSON payload are checked; a web app that is down is failed", () => {
  const box = fakeBox({ name: "app", grants: { "local-app": true } });
  deepStrictEqual(box.run(call(() => localApp.notify("config_updated", '{"from":"test"}'))), { ok: true, result: null });
  deepStrictEqual(box.notifications, [{ event: "config_updated", payload: { from: "test" } }]);
  deepStrictEqual(box.run(call(() => localApp.notify("Config-Updated", undefined))), {
    ok: false,
    kind: "invalid-input",
    message: "'Config-Updated' is not a valid event name (a-z, 0-9 and '_')",
  });
  strictEqual(box.run(call(() => localApp.notify("reload", "{nope"))).message.startsWith("the payload is not valid JSON: "), true);
  deepStrictEqual(fakeBox({ grants: { "local-app": true }, localApp: "down" }).run(call(() => localApp.notify("reload", undefined))), {
    ok: false,
    kind: "failed",
    message: "the local web app at http://localhost:3000 was not notified: connection refused",
  });
  deepStrictEqual(fakeBox({ name: "app", grants: {} }).run(call(() => localApp.notify("reload", undefined))), {
    ok: false,
    kind: "not-permitted",
    message: "component 'app' lacks the grant local-app = true",
  });
});

test("logs: journal units, the agent log and file tails, with their grants and line bounds", () => {
  const manifest = parseManifest('name = "l"\n[grants]\nlogs = { units = ["neopro-app", "neopro-sync-agent"], agent-log = true } # "*": any\nfiles = { logs = "ro" }\n');
  deepStrictEqual(manifest.grants.logs, { units: ["neopro-app", "neopro-sync-agent"], "agent-log": true });
  const box = fakeBox({
    ...manifest,
    journal: { "neopro-app": "a\nb\nc\n", "neopro-runtime": "agent line\n" },
    agentLog: "1\n2\n3",
    files: { "logs/app.log": "x\ny\nz\n" },
  });
  deepStrictEqual(box.run(call(() => logs.journalTail("neopro-app", 2))), { ok: true, result: "b\nc\n" });
  // The upstream agent's unit name reads this agent's journal.
  deepStrictEqual(box.run(call(() => logs.journalTail("neopro-sync-agent", 1))), { ok: true, result: "agent line\n" });
  deepStrictEqual(box.run(call(() => logs.agentLogTail(2))), { ok: true, result: "2\n3" });
  deepStrictEqual(box.run(call(() => logs.fileTail("logs", "app.log", 1))), { ok: true, result: "z\n" });
  deepStrictEqual(box.run(call(() => logs.journalTail("nginx", 5))), {
    ok: false,
    kind: "not-permitted",
    message: `component 'l' lacks the grant logs.units containing "nginx"`,
  });
  deepStrictEqual(box.run(call(() => logs.journalTail("neopro-app", 0))), { ok: false, kind: "invalid-input", message: "lines must be between 1 and 10000, got 0" });
  deepStrictEqual(box.run(call(() => logs.fileTail("logs", "nope.log", 1))), { ok: false, kind: "not-found", message: "logs/nope.log does not exist" });
  deepStrictEqual(box.run(call(() => logs.fileTail("videos", "a", 1))), {
    ok: false,
    kind: "not-permitted",
    message: `component 'l' has no access to 'videos' (missing grant files.videos = "ro")`,
  });
  deepStrictEqual(fakeBox({ ...manifest }).run(call(() => logs.agentLogTail(1))), {
    ok: false,
    kind: "not-found",
    message: "the agent log /home/pi/neopro/logs/sync-agent.log does not exist yet",
  });
});

test("archive: extraction writes the files and refuses what the agent refuses, leaving nothing behind", () => {
  const update = tarGz([
    { path: "./", dir: true },
    { path: "app/index.js", data: "console.log(1)" },
    { path: "app/current", symlink: "index.js" },
    { path: "node_modules/x.js", data: "skipped" },
  ]);
  const box = fakeBox({ name: "u", grants: { files: { staging: "rw" } }, files: { "staging/update.tar.gz": update } });
  const extract = (src, dest) => call(() => {
    const r = archive.extractTarGz("staging", src, "staging", dest, ["node_modules"]);
    return { files: Number(r.files), bytes: Number(r.bytes), skipped: r.skipped, listed: files.list("staging", `${dest}/app`) };
  });
  deepStrictEqual(box.run(extract("update.tar.gz", "new")), {
    ok: true,
    result: {
      files: 1,
      bytes: 14,
      skipped: ["node_modules/x.js"],
      listed: [
        { name: "current", kind: "symlink", size: 8 },
        { name: "index.js", kind: "file", size: 14 },
      ],
    },
  });
  strictEqual(box.files()["staging/new/app/index.js"], "console.log(1)");
  deepStrictEqual(box.run(extract("update.tar.gz", "new")), {
    ok: false,
    kind: "invalid-input",
    message: "staging/new already exists; an archive is extracted into a new folder",
  });
  const refused = {
    parent: [{ path: "../evil", data: "x" }, "not-permitted", "the archive entry '../evil' contains '..'; it would be written outside the update"],
    abs: [{ path: "/etc/passwd", data: "x" }, "not-permitted", "the archive entry '/etc/passwd' has an absolute path; update archives must be relative"],
    out: [{ path: "a/link", symlink: "../../etc" }, "not-permitted", "the archive entry 'a/link' is a link to '../../etc', which leads outside the update"],
    fifo: [{ path: "pipe", fifo: true }, "not-permitted", "the archive entry 'pipe' is a FIFO; only files, folders and links are allowed"],
  };
  for (const [label, [entry, kind, message]] of Object.entries(refused)) {
    const b = fakeBox({ name: "u", grants: { files: { staging: "rw" } }, files: { "staging/u.tar.gz": tarGz([{ path: "ok.txt", data: "1" }, entry]) } });
    deepStrictEqual(b.run(extract("u.tar.gz", label)), { ok: false, kind, message }, label);
    deepStrictEqual(Object.keys(b.files()), ["staging/u.tar.gz"], `${label}: the partial extraction is removed`);
  }
  const through = fakeBox({ grants: { files: { staging: "rw" } }, files: { "staging/t.tar.gz": tarGz([{ path: "l", symlink: "." }, { path: "l/x", data: "1" }]) } });
  strictEqual(through.run(extract("t.tar.gz", "t")).message, "the archive entry 'l/x' lies under 'l', a link made by an earlier entry; entries go into real folders only");
  const notGz = fakeBox({ grants: { files: { staging: "rw" } }, files: { "staging/n.tar.gz": "not gzip" } });
  deepStrictEqual(notGz.run(extract("n.tar.gz", "n")).kind, "invalid-input");
  deepStrictEqual(fakeBox({ name: "u", grants: { files: { staging: "ro" } }, files: { "staging/u.tar.gz": update } }).run(extract("u.tar.gz", "x")), {
    ok: false,
    kind: "not-permitted",
    message: `component 'u' has read-only access to 'staging' (grant files.staging = "rw" to write)`,
  });
});

function keyPair() {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(12).toString("hex");
  return { key: `ed25519:${raw}`, sign: (text) => sign(null, Buffer.from(text), privateKey).toString("hex") };
}

test("archive: release signatures, the app downgrade rule and agent releases", () => {
  const ops = keyPair();
  const bytes = "release bytes";
  const sha = createHash("sha256").update(bytes).digest("hex");
  const grants = { files: { staging: "ro", "neopro-root": "ro" }, "agent-update": true };
  const box = fakeBox({ name: "u", grants, updateKeys: [ops.key], files: { "staging/r.tar.gz": bytes, "neopro-root/VERSION": "2.1.0\n" } });
  const verify = (sig) => call(() => archive.verifySignature("staging", "r.tar.gz", "2.2.0", sig));
  deepStrictEqual(box.run(verify(ops.sign(`neopro-update:2.2.0:${sha}`))), { ok: true, result: sha });
  deepStrictEqual(box.run(verify(ops.sign(`neopro-update:2.3.0:${sha}`))), {
    ok: false,
    kind: "not-permitted",
    message: "the update signature does not match any key of UPDATE_TRUSTED_KEYS",
  });
  deepStrictEqual(box.run(verify(undefined)), {
    ok: false,
    kind: "not-permitted",
    message: "this box only installs signed updates (UPDATE_TRUSTED_KEYS in site.conf) and this update has no signature",
  });
  deepStrictEqual(box.run(verify("abc")), { ok: false, kind: "invalid-input", message: "the update signature must be 128 hex digits (ed25519)" });
  // No keys: no signature needed.
  deepStrictEqual(fakeBox({ grants, files: { "staging/r.tar.gz": bytes } }).run(verify(undefined)), { ok: true, result: sha });

  deepStrictEqual(box.run(call(() => archive.checkAppRelease("2.1.1"))), { ok: true, result: null });
  deepStrictEqual(box.run(call(() => archive.checkAppRelease("2.0.9"))), {
    ok: false,
    kind: "not-permitted",
    message: "refusing to install 2.0.9: it is older than the installed 2.1.0. Downgrades are refused unless UPDATE_ALLOW_DOWNGRADE=true in site.conf",
  });

  const release = tarGz([{ path: "agent-release.json", data: "{}" }, { path: "neopro-runtime", data: "ELF" }]);
  const releaseSha = createHash("sha256").update(release).digest("hex");
  const agentBox = (extra = {}) =>
    fakeBox({ name: "u", grants, updateKeys: [ops.key], agent: { version: "1.4.0", previous: "1.3.0" }, files: { "staging/a.tar.gz": release, "staging/app.tar.gz": tarGz([{ path: "index.js", data: "1" }]) }, ...extra });
  const stage = (version, path = "a.tar.gz") => call(() => agentUpdate.stageAgentRelease("staging", path, version, ops.sign(`neopro-update:${version}:${releaseSha}`), undefined));
  const staged = agentBox();
  deepStrictEqual(staged.run(stage("1.5.0")), { ok: true, result: "1.5.0" });
  deepStrictEqual(staged.followUps, [{ action: "agent-switch", version: "1.5.0" }]);
  deepStrictEqual(agentBox().run(stage("1.5.0", "app.tar.gz")), { ok: true, result: null });
  deepStrictEqual(agentBox().run(stage("1.3.9")), {
    ok: false,
    kind: "not-permitted",
    message: "agent release 1.3.9 refused: it is older than the running agent 1.4.0 (set UPDATE_ALLOW_DOWNGRADE=true in site.conf to allow a downgrade)",
  });
  deepStrictEqual(agentBox({ updateKeys: [] }).run(stage("1.5.0")), {
    ok: false,
    kind: "not-permitted",
    message: "agent release 1.5.0 refused: this box installs an agent release only when it is signed, and no UPDATE_TRUSTED_KEYS are set in site.conf",
  });
  const back = agentBox();
  deepStrictEqual(back.run(call(() => agentUpdate.rollbackAgentRelease("1.4.0"))), { ok: true, result: "1.3.0" });
  deepStrictEqual(back.run(call(() => agentUpdate.rollbackAgentRelease("1.2.0"))), { ok: true, result: null });
  deepStrictEqual(fakeBox({ name: "u", grants: { files: { staging: "ro" } } }).run(call(() => agentUpdate.rollbackAgentRelease("1.4.0"))), {
    ok: false,
    kind: "not-permitted",
    message: "component 'u' lacks the grant agent-update = true",
  });
});

test("versions are ordered as the agent orders them", () => {
  strictEqual(compareVersions("1.9.0", "1.10.0"), -1);
  strictEqual(compareVersions("2.0.0-rc.2", "2.0.0-rc.10"), -1);
  strictEqual(compareVersions("2.0.0-rc.1", "2.0.0"), -1);
  strictEqual(compareVersions("v2.1", "2.1.0"), 0);
  strictEqual(compareVersions("2.0.0", "2.0.0+build.5"), 0);
  strictEqual(compareVersions("latest", "2.0.0"), undefined);
});
