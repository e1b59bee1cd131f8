// Conformance peer: the NEOPRO central server's socket layer on the real
// socket.io 4 library, behaving as upstream's central-server does
// (socket.service.ts, deployment.service.ts, update-deployment.service.ts,
// canary-deployment.service.ts). Written from that behaviour, not copied.
// Its database is in memory; everything the agent sends and everything
// the server does is printed, so tests/conformance.rs asserts on it.
//
// Usage: node central.js            (127.0.0.1 only)
// Environment (defaults are upstream's):
//   PORT=0                 listening port (0 = any free one)
//   SITES={"id":"key"}     the sites table
//   PING_INTERVAL=25000 PING_TIMEOUT=60000   Engine.IO pings
//   AUTH_TIMEOUT_MS=30000  kick of sockets that never sent `authenticate`
//   PING_CHECK_MS=30000    ping_check / zombie job period
//   ZOMBIE_MS=90000        no pong_check nor heartbeat for this long: kicked
//   TIMEOUT_CHECK_MS=10000 command timeout job period
//   COMMAND_TIMEOUT_SCALE=1 upstream's command timeouts times this (tests)
//   POOL_JITTER_MS=20      each database write waits 0..this ms, as on a
//                          connection pool (events applied out of order)
//
// stdout, one JSON object per line:
//   {"kind":"listening","port":N}
//   {"kind":"connection","socket":id}
//   {"kind":"event","socket":id,"site":id|null,"event":name,"data":arg0}
//   {"kind":"emit","socket":id,"event":name,"data":...}
//   {"kind":"kicked","socket":id,"why":"auth timeout"|"zombie"}
//   {"kind":"disconnect","socket":id,"site":id|null,"reason":...}
//   {"kind":"applied","table":..,"id":..,"row":{...}}    a database write
//   {"kind":"broadcast","event":name,"data":...}           io.emit to dashboards
//   {"kind":"reply","seq":n,...}                          answer to a control line
// stdin, one JSON object per line (`seq` is echoed in the reply):
//   {"op":"command","seq":n,"siteId":..,"type":..,"data":{..},"id"?:..}
//   {"op":"add_update","seq":n,"siteId":..,"deploymentId":..,"softwareUpdateId":..,
//        "version":..,"packageUrl":..,"packageSize":<number>,"checksum":..,
//        "isCritical":bool,"description":..,"changelog":..}
//   {"op":"add_content","seq":n,"siteId":..,"deploymentId":..,"video":{videoId,videoUrl,
//        filename,originalName,category,subcategory,duration,checksum,sponsorId,analyticsCategory}}
//   {"op":"canary_update","seq":n,"siteId":..,"canaryDeploymentId":..,"softwareUpdateId":..}
//   {"op":"canary_rollback","seq":n,"siteId":..,"canaryDeploymentId":..,"softwareUpdateId":..}
//   {"op":"books","seq":n}            the tables
//   {"op":"kick","seq":n,"siteId":..} server-side disconnect of the site's socket
//   {"op":"drop_on_result","seq":n,"commandId":..}  fault injection: a
//        successful result for that id makes the server drop the connection

"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const readline = require("node:readline");
const { Server } = require("socket.io");

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  return Number.isFinite(n) ? n : fallback;
};

const PORT = env("PORT", 0);
const SITES = JSON.parse(process.env.SITES || "{}");
const AUTH_TIMEOUT_MS = env("AUTH_TIMEOUT_MS", 30000);
const PING_CHECK_MS = env("PING_CHECK_MS", 30000);
const ZOMBIE_MS = env("ZOMBIE_MS", 90000);
const TIMEOUT_CHECK_MS = env("TIMEOUT_CHECK_MS", 10000);
const POOL_JITTER_MS = env("POOL_JITTER_MS", 20);
// Tests only: upstream's command timeouts multiplied by this (1 = upstream).
const COMMAND_TIMEOUT_SCALE = env("COMMAND_TIMEOUT_SCALE", 1);

// socket.service.ts COMMAND_TIMEOUTS.
const COMMAND_TIMEOUTS = {
  deploy_video: 600000,
  update_config: 30000,
  update_software: 900000,
  reboot: 60000,
  restart_service: 60000,
  get_logs: 30000,
  get_system_info: 15000,
  get_config: 15000,
  update_hotspot: 60000,
  get_hotspot_config: 15000,
  network_diagnostics: 30000,
  default: 120000,
};

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// A database write on a pooled connection: it lands a little later, in
// no guaranteed order relative to the writes of other events.
function pooled(write) {
  setTimeout(write, Math.floor(Math.random() * (POOL_JITTER_MS + 1)));
}

// The in-memory database.
const db = {
  remote_commands: new Map(), // id -> {site_id, command_type, command_data, status, result, error_message}
  content_deployments: new Map(), // id -> {site_id, video, status, progress, error_message}
  update_deployments: new Map(), // id -> {site_id, software_update_id, status, progress, error_message}
  software_updates: new Map(), // id -> {version, package_url, package_size, checksum, is_critical, description, changelog}
  sites: new Map(), // id -> {status, last_seen_at, local_ip, software_version, local_config_hash, local_config_mirror}
  metrics: new Map(), // n -> {site_id, cpu_usage, memory_usage, temperature, disk_usage, uptime}
};

function applied(table, id) {
  print({ kind: "applied", table, id, row: db[table].get(id) });
}

const connectedSites = new Map(); // siteId -> socket
const lastPongReceived = new Map(); // siteId -> ms
const pendingCommands = new Map(); // commandId -> {siteId, type, sentAt, timeoutMs}

// Upstream's server answers `/health`; anything else outside socket.io's
// path is not part of this peer.
const httpServer = http.createServer((req, res) => {
  const health = req.url === "/health";
  res.writeHead(health ? 200 : 404, { "content-type": "application/json" });
  res.end(JSON.stringify(health ? { status: "healthy" } : { error: "Not found" }));
});
// Upstream's options; maxHttpBufferSize left at socket.io's default (1e6).
const io = new Server(httpServer, {
  transports: ["websocket", "polling"],
  pingInterval: env("PING_INTERVAL", 25000),
  pingTimeout: env("PING_TIMEOUT", 60000),
  cors: { origin: "*", methods: ["GET", "POST"], credentials: true },
});

function emitTo(socket, event, data) {
  print({ kind: "emit", socket: socket.id, event, data });
  socket.emit(event, data);
}

function broadcast(event, data) {
  print({ kind: "broadcast", event, data });
  io.emit(event, data);
}

function sendCommand(siteId, command) {
  const socket = connectedSites.get(siteId);
  if (!socket) return false;
  pendingCommands.set(command.id, {
    siteId,
    type: command.type,
    sentAt: Date.now(),
    timeoutMs: (COMMAND_TIMEOUTS[command.type] || COMMAND_TIMEOUTS.default) * COMMAND_TIMEOUT_SCALE,
  });
  emitTo(socket, "command", command);
  return true;
}

function recordCommand(siteId, command, status) {
  db.remote_commands.set(command.id, {
    site_id: siteId,
    command_type: command.type,
    command_data: command.data,
    status,
    result: null,
    error_message: null,
  });
  applied("remote_commands", command.id);
}

// update-deployment.service.ts deployToSite: a new command id every time,
// `updateId` is the deployment's id (the SELECT's `ud.*` shadows `su.id`),
// `packageSize` a string (BIGINT through node-pg).
function deployUpdateToSite(deploymentId, siteId) {
  if (!connectedSites.has(siteId)) return false;
  const ud = db.update_deployments.get(deploymentId);
  const su = db.software_updates.get(ud.software_update_id);
  const command = {
    id: crypto.randomUUID(),
    type: "update_software",
    data: {
      deploymentId,
      updateId: deploymentId,
      version: su.version,
      updateUrl: su.package_url,
      packageSize: su.package_size === null ? null : String(su.package_size),
      checksum: su.checksum,
      isCritical: su.is_critical,
      description: su.description,
      changelog: su.changelog,
    },
  };
  recordCommand(siteId, command, "executing");
  return sendCommand(siteId, command);
}

// deployment.service.ts deployToSite: not recorded in remote_commands.
function deployContentToSite(deploymentId, siteId) {
  const cd = db.content_deployments.get(deploymentId);
  const v = cd.video;
  return sendCommand(siteId, {
    id: crypto.randomUUID(),
    type: "deploy_video",
    data: {
      deploymentId,
      videoId: v.videoId,
      videoUrl: v.videoUrl,
      filename: v.filename,
      originalName: v.originalName,
      category: v.category || "default",
      subcategory: v.subcategory || null,
      duration: v.duration || 0,
      checksum: v.checksum,
      sponsorId: v.sponsorId || null,
      analyticsCategory: v.analyticsCategory || null,
    },
  });
}

// After each authentication: content then update deployments that are
// pending or in progress, each under a new command id.
function processPendingOnReconnect(siteId) {
  for (const [id, cd] of db.content_deployments) {
    if (cd.site_id === siteId && (cd.status === "pending" || cd.status === "in_progress")) {
      if (deployContentToSite(id, siteId) && cd.status === "pending") {
        cd.status = "in_progress";
        applied("content_deployments", id);
      }
    }
  }
  for (const [id, ud] of db.update_deployments) {
    if (ud.site_id === siteId && (ud.status === "pending" || ud.status === "in_progress")) {
      if (deployUpdateToSite(id, siteId) && ud.status === "pending") {
        ud.status = "in_progress";
        applied("update_deployments", id);
      }
    }
  }
}

// Fault injection (not upstream behaviour): command ids whose successful
// result makes the server drop the connection, as a limit the agent does
// not know of would.
const dropOnResult = new Set();

function handleCommandResult(siteId, result) {
  const { commandId, status } = result || {};
  if (dropOnResult.has(commandId) && status === "success") {
    const socket = connectedSites.get(siteId);
    print({ kind: "kicked", socket: socket && socket.id, why: "result refused" });
    if (socket) socket.disconnect(true);
    return;
  }
  pendingCommands.delete(commandId);
  pooled(() => {
    const row = db.remote_commands.get(commandId);
    if (row) {
      // No status guard: a late result overwrites a timeout.
      row.status = status === "success" ? "completed" : "failed";
      row.result = result.result === undefined ? null : result.result;
      row.error_message = result.error || null;
      applied("remote_commands", commandId);
      const deploymentId = row.command_data && row.command_data.deploymentId;
      if (row.command_type === "update_software" && typeof deploymentId === "string") {
        const ud = db.update_deployments.get(deploymentId);
        if (ud) {
          if (status === "success") {
            ud.status = "completed";
            ud.progress = 100;
          } else {
            ud.status = "failed";
            ud.error_message = result.error || "Erreur inconnue";
          }
          applied("update_deployments", deploymentId);
        }
      }
    }
    broadcast("command_completed", { siteId, commandId, status });
  });
}

function handleDeployProgress(siteId, p) {
  const { deploymentId, progress, completed, error } = p || {};
  pooled(() => {
    const cd = deploymentId && db.content_deployments.get(deploymentId);
    if (cd) {
      applyProgress(cd, progress, error, completed);
      applied("content_deployments", deploymentId);
    }
    broadcast("deploy_progress", { siteId, deploymentId, progress, completed, error, ...p });
  });
}

/** Upstream's rule for a deployment row's status, the same in both handlers. */
function applyProgress(row, progress, error, done) {
  if (error) {
    row.status = "failed";
    row.error_message = error;
  } else if (done) {
    row.status = "completed";
    row.progress = 100;
  } else {
    row.progress = progress || 0;
    row.status = "in_progress";
  }
}

function handleUpdateProgress(siteId, p) {
  const { deploymentId, progress, completed, error, version } = p || {};
  pooled(() => {
    const ud = deploymentId && db.update_deployments.get(deploymentId);
    if (ud) {
      // Upstream's update handler also takes 100 % as the end.
      applyProgress(ud, progress, error, completed || progress >= 100);
      applied("update_deployments", deploymentId);
    }
    broadcast("update_progress", { siteId, deploymentId, progress, completed, error, version });
  });
}

function authError(socket, message) {
  emitTo(socket, "auth_error", { message: `Authentification échouée: ${message}` });
  socket.disconnect();
}

function authenticate(socket, data) {
  const { siteId, apiKey } = data || {};
  if (!siteId || !apiKey) return authError(socket, "Identifiants manquants");
  if (!Object.prototype.hasOwnProperty.call(SITES, siteId)) {
    return authError(socket, `Site non trouvé: ${siteId}`);
  }
  if (SITES[siteId] !== apiKey) return authError(socket, "Clé API invalide");

  socket.siteId = siteId;
  connectedSites.set(siteId, socket);
  socket.join(siteId);
  const site = db.sites.get(siteId) || {};
  site.status = "online";
  db.sites.set(siteId, site);
  emitTo(socket, "authenticated", { message: "Authentification réussie", siteId });

  // Registered only now: events sent before `authenticated` are ignored.
  socket.on("heartbeat", (m) => {
    lastPongReceived.set(siteId, Date.now());
    pooled(() => {
      // socket.service.ts handleHeartbeat: a `metrics` row (uptime
      // floored; a heartbeat without `metrics` throws there and writes
      // nothing), then the site's status, local IP and version.
      if (!m || typeof m.metrics !== "object" || m.metrics === null) {
        print({ kind: "heartbeat_error", site: siteId, error: "Cannot read properties of undefined (reading 'cpu')" });
        return;
      }
      const metrics = m.metrics;
      const row = {
        site_id: siteId,
        cpu_usage: metrics.cpu,
        memory_usage: metrics.memory,
        temperature: metrics.temperature,
        disk_usage: metrics.disk,
        uptime: Math.floor(metrics.uptime),
      };
      db.metrics.set(String(db.metrics.size + 1), row);
      applied("metrics", String(db.metrics.size));
      const s = db.sites.get(siteId);
      s.status = "online";
      s.last_seen_at = new Date().toISOString();
      if (metrics.localIp) s.local_ip = metrics.localIp;
      const version = m.softwareVersion || (m.versionInfo && m.versionInfo.version);
      if (version) s.software_version = version;
      applied("sites", siteId);
    });
  });
  socket.on("command_result", (r) => handleCommandResult(siteId, r));
  socket.on("deploy_progress", (p) => handleDeployProgress(siteId, p));
  socket.on("update_progress", (p) => handleUpdateProgress(siteId, p));
  socket.on("sync_local_state", (state) => {
    pooled(() => {
      const s = db.sites.get(siteId);
      s.local_config_hash = state && state.configHash;
      s.local_config_mirror = state && state.config;
      applied("sites", siteId);
      broadcast("site_config_updated", {
        siteId,
        configHash: state && state.configHash,
        categoriesCount: (state && state.config && state.config.categories || []).length,
        timestamp: new Date().toISOString(),
      });
    });
  });
  socket.on("pong_check", () => lastPongReceived.set(siteId, Date.now()));
  lastPongReceived.set(siteId, Date.now());

  processPendingOnReconnect(siteId);
}

io.on("connection", (socket) => {
  print({ kind: "connection", socket: socket.id });
  socket.onAny((event, ...args) => {
    const data = args.length > 0 && args[0] !== undefined ? args[0] : null;
    print({ kind: "event", socket: socket.id, site: socket.siteId || null, event, data });
  });

  const authTimeout = setTimeout(() => {
    if (!socket.siteId) {
      print({ kind: "kicked", socket: socket.id, why: "auth timeout" });
      socket.disconnect(true);
    }
  }, AUTH_TIMEOUT_MS);

  socket.on("authenticate", (data) => {
    clearTimeout(authTimeout);
    authenticate(socket, data);
  });

  socket.on("disconnect", (reason) => {
    clearTimeout(authTimeout);
    const siteId = socket.siteId || null;
    print({ kind: "disconnect", socket: socket.id, site: siteId, reason });
    if (siteId) {
      // Upstream deletes the entry whichever socket of the site closed.
      connectedSites.delete(siteId);
      lastPongReceived.delete(siteId);
      const s = db.sites.get(siteId);
      if (s) s.status = "offline";
    }
  });
});

// Zombie detection and ping_check.
setInterval(() => {
  const now = Date.now();
  for (const [siteId, socket] of connectedSites) {
    const last = lastPongReceived.get(siteId);
    if (last === undefined) {
      lastPongReceived.set(siteId, now);
    } else if (now - last > ZOMBIE_MS) {
      print({ kind: "kicked", socket: socket.id, why: "zombie" });
      socket.disconnect(true);
      connectedSites.delete(siteId);
      lastPongReceived.delete(siteId);
    } else {
      emitTo(socket, "ping_check", { timestamp: now });
    }
  }
}, PING_CHECK_MS);

// Command timeouts.
setInterval(() => {
  const now = Date.now();
  for (const [commandId, pending] of pendingCommands) {
    const elapsed = now - pending.sentAt;
    if (elapsed >= pending.timeoutMs) {
      pendingCommands.delete(commandId);
      const row = db.remote_commands.get(commandId);
      if (row && (row.status === "pending" || row.status === "executing")) {
        row.status = "failed";
        row.error_message = `Command timeout after ${Math.round(elapsed / 1000)}s`;
        applied("remote_commands", commandId);
      }
      broadcast("command_timeout", { siteId: pending.siteId, commandId, type: pending.type });
    }
  }
}, TIMEOUT_CHECK_MS);

function books() {
  const out = {};
  for (const [name, table] of Object.entries(db)) out[name] = Object.fromEntries(table);
  out.connected = [...connectedSites.keys()];
  return out;
}

function control(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    print({ kind: "reply", seq: null, error: `bad control line: ${e.message}` });
    return;
  }
  const seq = msg.seq === undefined ? null : msg.seq;
  const reply = (fields) => print({ kind: "reply", seq, ...fields });
  switch (msg.op) {
    case "command": {
      // The REST route: a remote_commands row, then the emit.
      const command = { id: msg.id || crypto.randomUUID(), type: msg.type, data: msg.data || {} };
      if (!connectedSites.has(msg.siteId)) return reply({ id: command.id, sent: false });
      recordCommand(msg.siteId, command, "pending");
      const sent = sendCommand(msg.siteId, command);
      db.remote_commands.get(command.id).status = "executing";
      applied("remote_commands", command.id);
      return reply({ id: command.id, sent });
    }
    case "add_update": {
      db.software_updates.set(msg.softwareUpdateId, {
        version: msg.version,
        package_url: msg.packageUrl,
        package_size: msg.packageSize === undefined ? null : msg.packageSize,
        checksum: msg.checksum || null,
        is_critical: Boolean(msg.isCritical),
        description: msg.description || null,
        changelog: msg.changelog || null,
      });
      db.update_deployments.set(msg.deploymentId, {
        site_id: msg.siteId,
        software_update_id: msg.softwareUpdateId,
        status: "pending",
        progress: 0,
        error_message: null,
      });
      const sent = deployUpdateToSite(msg.deploymentId, msg.siteId);
      if (sent) db.update_deployments.get(msg.deploymentId).status = "in_progress";
      applied("update_deployments", msg.deploymentId);
      return reply({ sent });
    }
    case "add_content": {
      db.content_deployments.set(msg.deploymentId, {
        site_id: msg.siteId,
        video: msg.video,
        status: "pending",
        progress: 0,
        error_message: null,
      });
      const sent = connectedSites.has(msg.siteId) && deployContentToSite(msg.deploymentId, msg.siteId);
      if (sent) db.content_deployments.get(msg.deploymentId).status = "in_progress";
      applied("content_deployments", msg.deploymentId);
      return reply({ sent });
    }
    case "canary_update":
    case "canary_rollback": {
      // canary-deployment.service.ts: `updateId` is the software update's id.
      const command = {
        id: crypto.randomUUID(),
        type: msg.op === "canary_update" ? "update_software" : "rollback_update",
        data: { canaryDeploymentId: msg.canaryDeploymentId, updateId: msg.softwareUpdateId },
      };
      if (msg.op === "canary_update") {
        command.data = { updateId: msg.softwareUpdateId, canaryDeploymentId: msg.canaryDeploymentId };
      }
      return reply({ id: command.id, sent: sendCommand(msg.siteId, command) });
    }
    case "drop_on_result":
      dropOnResult.add(msg.commandId);
      return reply({});
    case "books":
      return reply({ books: books() });
    case "kick": {
      const socket = connectedSites.get(msg.siteId);
      if (socket) socket.disconnect(true);
      return reply({ kicked: Boolean(socket) });
    }
    default:
      return reply({ error: `unknown op ${msg.op}` });
  }
}

readline.createInterface({ input: process.stdin }).on("line", control);
process.stdin.on("end", () => process.exit(0));

httpServer.listen(PORT, "127.0.0.1", () => {
  print({ kind: "listening", port: httpServer.address().port });
});
