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
// blocks here until the handover stops the unit. If the handover cannot be
// started at all, the agent's own commands are loaded and it runs as before.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const handover = path.join(__dirname, '..', 'neopro-runtime', 'handover.sh');
const done = path.join(__dirname, '..', 'neopro-runtime', 'handover-done');

function ownCommands() {
  return require('./commands/index.js');
}

if (fs.existsSync(done)) {
  module.exports = ownCommands();
} else {
  const run = spawnSync(
    'sudo',
    ['-n', 'systemd-run', '--unit=neopro-handover', '--collect', '--quiet', '/bin/sh', handover],
    { stdio: 'inherit' },
  );
  if (run.status === 0) {
    console.log('neopro-runtime handover started; the Node.js agent waits to be stopped');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  }
  console.error(`cannot start the neopro-runtime handover (${run.error || 'exit ' + run.status}); the Node.js agent runs on`);
  module.exports = ownCommands();
}
