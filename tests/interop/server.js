// A real socket.io v4 server standing in for the NEOPRO central server, for
// ops/tests/interop.rs.
//
// Usage: node server.js <port>   (0 = any free port; always 127.0.0.1)
//
// Writes one JSON object per line on stdout:
//   {"kind":"listening","port":N}                  first, once listening
//   {"kind":"connection","id":"..."}               a client joined "/"
//   {"kind":"event","event":"<name>","data":<first arg or null>}
//   {"kind":"emit","event":"<name>","data":...}     what the server sent
//   {"kind":"disconnect","id":"...","reason":"..."}
//   {"kind":"done"}                                after the 2nd authentication
//
// Scenario: authenticate (site-1 / key-1) -> on the first heartbeat of the
// first authenticated connection, send command cmd-1 (get_config) -> on its
// command_result, disconnect the client from the server side -> the agent
// reconnects and authenticates again -> done.

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const SITE_ID = "site-1";
const API_KEY = "key-1";

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const port = Number.parseInt(process.argv[2] ?? "0", 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`usage: node server.js <port> (got ${process.argv[2]})\n`);
  process.exit(2);
}

const httpServer = http.createServer();
const io = new Server(httpServer, { pingInterval: 300, pingTimeout: 300 });

let authentications = 0;

io.on("connection", (socket) => {
  print({ kind: "connection", id: socket.id });

  // Set on this socket when it is the first one to authenticate.
  let scripted = false;
  let commandSent = false;

  const emit = (event, data) => {
    print({ kind: "emit", event, data });
    socket.emit(event, data);
  };

  socket.onAny((event, ...args) => {
    const data = args.length > 0 && args[0] !== undefined ? args[0] : null;
    print({ kind: "event", event, data });

    switch (event) {
      case "authenticate": {
        const { siteId, apiKey } = data ?? {};
        if (siteId === SITE_ID && apiKey === API_KEY) {
          authentications += 1;
          emit("authenticated", { message: "Authentification réussie", siteId });
          if (authentications === 1) {
            scripted = true;
          } else if (authentications === 2) {
            print({ kind: "done" });
          }
        } else {
          emit("auth_error", { message: "Authentification échouée: Clé API invalide" });
          socket.disconnect(true);
        }
        break;
      }
      case "heartbeat":
        if (scripted && !commandSent) {
          commandSent = true;
          emit("command", { id: "cmd-1", type: "get_config", data: {} });
        }
        break;
      case "command_result":
        if (scripted && commandSent && data && data.commandId === "cmd-1") {
          scripted = false;
          print({ kind: "server_disconnect", id: socket.id });
          socket.disconnect(true);
        }
        break;
      default:
        break;
    }
  });

  socket.on("disconnect", (reason) => {
    print({ kind: "disconnect", id: socket.id, reason });
  });
});

httpServer.on("error", (err) => {
  process.stderr.write(`server error: ${err.stack ?? err}\n`);
  process.exit(1);
});

httpServer.listen(port, "127.0.0.1", () => {
  print({ kind: "listening", port: httpServer.address().port });
});

const stop = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
