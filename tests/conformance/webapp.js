// Conformance peer: the box's own web app server (upstream
// raspberry/server/server.js) on the real socket.io 4 library, with a TV
// client (socket.io-client) connected to it. Written from upstream's
// behaviour, not copied: on connection it emits `score-update` and
// `phase-change` to the new socket; `config_updated` reads
// $HOME/neopro/webapp/configuration.json and broadcasts
// `action {type: "reload-config", data: <config>}`; `command` is
// re-broadcast as `action`; the other live-score events are relayed.
//
// Usage: node webapp.js             (127.0.0.1 only)
// Environment: PORT=0 (0 = any free port), HOME (where neopro/ lives).
//
// stdout, one JSON object per line:
//   {"kind":"listening","port":N}            once the TV client is connected
//   {"kind":"connection","socket":id}
//   {"kind":"event","socket":id,"event":name,"data":arg0}   read by the app
//   {"kind":"handled","socket":id,"event":name}             its handler ran
//   {"kind":"disconnect","socket":id,"reason":...}
//   {"kind":"tv","event":name,"data":...}    what the TV client received
//                                            (`action` data: {type, version})

"use strict";

const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
const { Server } = require("socket.io");
const { io: connect } = require("socket.io-client");

const PORT = Number.parseInt(process.env.PORT || "0", 10);

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const httpServer = http.createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ status: "ok", service: "Neopro Socket.IO Server" }));
});
const io = new Server(httpServer, {
  cors: { origin: ["http://localhost:4200"], methods: ["GET", "POST"], credentials: true },
});

let currentScore = { homeTeam: "DOMICILE", awayTeam: "EXTÉRIEUR", homeScore: 0, awayScore: 0 };
let currentPhase = "neutral";

function configPath() {
  return path.join(process.env.HOME || "/home/pi", "neopro", "webapp", "configuration.json");
}

io.on("connection", (socket) => {
  print({ kind: "connection", socket: socket.id });
  socket.onAny((event, ...args) => {
    const data = args.length > 0 && args[0] !== undefined ? args[0] : null;
    print({ kind: "event", socket: socket.id, event, data });
  });
  const handled = (event) => print({ kind: "handled", socket: socket.id, event });

  socket.emit("score-update", currentScore);
  socket.emit("phase-change", { phase: currentPhase });

  socket.on("command", (data) => {
    handled("command");
    io.emit("action", data);
  });
  socket.on("score-update", (data) => {
    handled("score-update");
    currentScore = {
      homeTeam: data.homeTeam || currentScore.homeTeam,
      awayTeam: data.awayTeam || currentScore.awayTeam,
      homeScore: data.homeScore ?? currentScore.homeScore,
      awayScore: data.awayScore ?? currentScore.awayScore,
    };
    io.emit("score-update", currentScore);
  });
  socket.on("score-reset", () => {
    handled("score-reset");
    currentScore.homeScore = 0;
    currentScore.awayScore = 0;
    io.emit("score-reset");
    io.emit("score-update", currentScore);
  });
  socket.on("phase-change", (data) => {
    handled("phase-change");
    currentPhase = data.phase;
    io.emit("phase-change", data);
  });
  socket.on("request-state", () => {
    handled("request-state");
    socket.emit("score-update", currentScore);
    socket.emit("phase-change", { phase: currentPhase });
  });
  socket.on("config_updated", () => {
    handled("config_updated");
    try {
      if (fs.existsSync(configPath())) {
        const config = JSON.parse(fs.readFileSync(configPath(), "utf8"));
        io.emit("action", { type: "reload-config", data: config });
      }
    } catch (error) {
      print({ kind: "config_error", message: error.message });
    }
  });
  socket.on("disconnect", (reason) => print({ kind: "disconnect", socket: socket.id, reason }));
});

httpServer.listen(PORT, "127.0.0.1", () => {
  const port = httpServer.address().port;
  const tv = connect(`http://127.0.0.1:${port}`, { transports: ["websocket"] });
  tv.onAny((event, data) => {
    const shown =
      event === "action" && data && typeof data === "object"
        ? { type: data.type, version: data.data && data.data.version }
        : data === undefined
          ? null
          : data;
    print({ kind: "tv", event, data: shown });
  });
  tv.once("connect", () => print({ kind: "listening", port }));
});

process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(0));
