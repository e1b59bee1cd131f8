#!/usr/bin/env node
// System-test stand-in for the upstream Node.js sync agent
// (Tallec7/neopro raspberry/sync-agent/src/agent.js), laid out as on a box:
// NEOPRO_ROOT/sync-agent/src/agent.js, its commands in src/commands/, its
// configuration from /etc/neopro/site.conf (the unit's EnvironmentFile).
// It does what the migration needs of the real one: connect, authenticate,
// heartbeat, answer ping_check, and run update_software as upstream does.
'use strict';
const io = require('socket.io-client');
const commands = require('./commands');

const url = process.env.CENTRAL_SERVER_URL;
const siteId = process.env.SITE_ID;
const apiKey = process.env.SITE_API_KEY;
const log = (msg) => console.log(`[old agent] ${msg}`);

const socket = io(url, { transports: ['websocket'], reconnectionDelay: 1000 });
let beat = null;
socket.on('connect', () => {
  log(`connected to ${url}`);
  socket.emit('authenticate', { siteId, apiKey });
});
socket.on('authenticated', () => {
  log('authenticated');
  const send = () =>
    socket.emit('heartbeat', {
      siteId,
      timestamp: Date.now(),
      metrics: { cpu: 1, memory: 1, temperature: 0, disk: 1, uptime: 1 },
      softwareVersion: null,
      versionInfo: { version: 'unknown', agent: 'node-sync-agent' },
    });
  send();
  clearInterval(beat);
  beat = setInterval(send, 2000);
});
socket.on('ping_check', () => socket.emit('pong_check'));
socket.on('command', async ({ id, type, data }) => {
  log(`command ${id}: ${type}`);
  const handler = commands[type];
  try {
    if (!handler) throw new Error(`Unknown command type: ${type}`);
    const result = await handler.execute(data, (progress) =>
      socket.emit('update_progress', { version: data.version, progress }),
    );
    socket.emit('command_result', { commandId: id, status: 'success', result });
  } catch (error) {
    log(`command ${id} failed: ${error.message}`);
    socket.emit('command_result', { commandId: id, status: 'error', error: error.message });
  }
});
process.on('SIGTERM', () => {
  socket.close();
  process.exit(0);
});
