// Added by the neopro-runtime migration bundle (`cargo xtask migration-bundle`).
//
// Node resolves `require('./commands')` to this file before the commands/
// folder, so the Node.js agent, restarted after installing the bundle,
// starts the handover here without one of its own files being replaced.
// The handover (../neopro-runtime/handover.sh) runs as root in its own
// transient unit, stops this agent, installs neopro-runtime and waits for it
// to authenticate; it removes this file on success and on rollback.
//
// While the handover runs this process must not connect as the site: it
// waits until the handover stops the unit. It never waits for ever: once
// the handover has recorded a rollback of this bundle's package, or has
// ended without recording anything, the agent's own commands are loaded and
// it runs as before (the handover also restarts the unit when it gives the
// box back). The record is kept by root in /var/lib/neopro-handover: `took
// over` is final; a rollback holds for one package (its sha256), so a
// bundle with another package tries again.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

// Filled in by `cargo xtask migration-bundle`: the package this bundle holds.
const PACKAGE_SHA256 = '@DEB_SHA256@';
const RECORD = path.join(process.env.NEOPRO_HANDOVER_DIR || '/var/lib/neopro-handover', 'handover-done');
const handover = path.join(__dirname, '..', 'neopro-runtime', 'handover.sh');

function ownCommands() {
  return require('./commands/index.js');
}

// The handover's verdict on this bundle: 'final' (took over), 'rolled back:
// <reason>' for this package, or null (none yet, or about another package).
function verdict() {
  let text;
  try {
    text = fs.readFileSync(RECORD, 'utf8');
  } catch {
    return null;
  }
  const [outcome = '', key = ''] = text.split('\n');
  if (outcome.startsWith('took over')) return 'final';
  if (outcome.startsWith('rolled back') && key === `deb-sha256 ${PACKAGE_SHA256}`) return outcome;
  return null;
}

// Whether the handover's transient unit still runs.
function handoverRuns() {
  const state = spawnSync('systemctl', ['is-active', 'neopro-handover'], { encoding: 'utf8' });
  return ['active', 'activating', 'deactivating', 'reloading'].includes((state.stdout || '').trim());
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function waitForHandover() {
  for (;;) {
    const seen = verdict();
    if (seen) return seen;
    if (!handoverRuns()) {
      // Read once more: the handover may have written it as it ended.
      return verdict() || 'the handover ended without an outcome (see journalctl -u neopro-handover)';
    }
    sleep(1000);
  }
}

// neopro-runtime speaks for this site now: never a second agent.
function tookOver() {
  console.error('neopro-runtime took this box over; the Node.js agent does not run');
  process.exit(0);
}

const before = verdict();
if (before === 'final') {
  tookOver();
} else if (before) {
  console.error(`neopro-runtime handover: ${before}; the Node.js agent runs on`);
  module.exports = ownCommands();
} else {
  const run = spawnSync(
    'sudo',
    ['-n', 'systemd-run', '--unit=neopro-handover', '--collect', '--quiet', '/bin/sh', handover],
    { stdio: 'inherit' },
  );
  if (run.status === 0) {
    console.log('neopro-runtime handover started; the Node.js agent waits to be stopped');
    const outcome = waitForHandover();
    if (outcome === 'final') tookOver();
    console.error(`neopro-runtime handover: ${outcome}; the Node.js agent runs on`);
  } else {
    console.error(`cannot start the neopro-runtime handover (${run.error || 'exit ' + run.status}); the Node.js agent runs on`);
  }
  module.exports = ownCommands();
}
