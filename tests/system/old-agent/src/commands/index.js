// The stand-in's commands: update_software exactly as upstream runs it
// (raspberry/sync-agent/src/commands/update-software.js): download, sha256,
// backup of webapp/server/admin, `sudo systemctl stop` of the apps,
// `tar -xzf` into NEOPRO_ROOT without videos/logs/backups/configuration.json,
// `npm install` where a package.json is (none here), start and check the
// apps, version files, then 5 s later `sudo systemctl restart
// neopro-sync-agent` — how upstream runs the new code of an update.
'use strict';
const fs = require('fs');
const path = require('path');
const http = require('http');
const crypto = require('crypto');
const { execFileSync, spawn } = require('child_process');

const root = process.env.NEOPRO_ROOT || '/home/pi/neopro';
const apps = ['neopro-app', 'neopro-admin'];

function download(url, to) {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`download: HTTP ${res.statusCode}`));
        const out = fs.createWriteStream(to);
        res.pipe(out);
        out.on('finish', resolve);
        out.on('error', reject);
      })
      .on('error', reject);
  });
}

const update_software = {
  async execute(data, progress) {
    const { updateUrl, version, checksum } = data;
    progress(5);
    const pkg = `/tmp/neopro-update-${version}.tar.gz`;
    await download(updateUrl, pkg);
    progress(35);
    const sum = crypto.createHash('sha256').update(fs.readFileSync(pkg)).digest('hex');
    if (checksum && sum !== checksum) throw new Error('Checksum verification failed');
    progress(40);
    const backup = path.join(root, 'backups', `backup-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    fs.mkdirSync(backup, { recursive: true });
    for (const item of ['webapp', 'server', 'admin']) {
      const from = path.join(root, item);
      if (fs.existsSync(from)) fs.cpSync(from, path.join(backup, item), { recursive: true });
    }
    progress(50);
    for (const s of apps) execFileSync('sudo', ['systemctl', 'stop', s]);
    execFileSync('tar', [
      '-xzf', pkg, '-C', `${root}/`,
      '--exclude=videos', '--exclude=logs', '--exclude=backups', '--exclude=webapp/configuration.json',
    ]);
    progress(80);
    fs.writeFileSync(path.join(root, 'VERSION'), `${version}\n`);
    fs.writeFileSync(
      path.join(root, 'release.json'),
      JSON.stringify({ version, buildDate: new Date().toISOString(), source: 'central-dashboard' }),
    );
    for (const s of apps) execFileSync('sudo', ['systemctl', 'start', s]);
    for (const s of apps) {
      const state = execFileSync('sudo', ['systemctl', 'is-active', s]).toString().trim();
      if (state !== 'active') throw new Error(`Service ${s} is not active after restart`);
    }
    setTimeout(() => {
      spawn('sudo', ['systemctl', 'restart', 'neopro-sync-agent'], { detached: true, stdio: 'ignore' }).unref();
    }, 5000);
    progress(100);
    return { success: true, version, previousVersion: '1.0.0' };
  },
};

module.exports = { update_software };
