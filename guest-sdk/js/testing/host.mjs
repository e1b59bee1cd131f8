// The fake host: every neopro:agent interface of the WIT, served from
// the box that `fakeBox(...).run(...)` made current. register.mjs loads this
// module once per interface (`?interface=files`), so functions of the same
// name in two interfaces (config-store `read`, files `read`) stay apart.
// Grants are checked as the agent checks them, with its messages.
const iface = new URL(import.meta.url).searchParams.get("interface");

function box() {
  const current = globalThis.__neoproFakeBox;
  if (!current) throw new Error(`neopro:agent/${iface} called outside fakeBox(...).run(...)`);
  return current;
}

// log
export function write(a, b) {
  if (iface === "log") {
    box().logs.push({ level: a, message: b });
    return undefined;
  }
  return box().configWrite(a, b);
}
// progress
export const report = (percent, detail) => box().reportProgress(percent, detail);
// files and config-store
export function read(root, path, maxBytes) {
  if (iface === "config-store") return box().configRead();
  return box().fs.read(root, path, maxBytes);
}
export const writeAtomic = (root, path, contents) => box().fs.writeAtomic(root, path, contents);
export const removeFile = (root, path) => box().fs.removeFile(root, path);
export const rename = (root, from, to) => box().fs.rename(root, from, to);
export const listDir = (root, path) => box().fs.listDir(root, path);
export const stat = (root, path) => box().fs.stat(root, path);
export const sha256 = (root, path) => box().fs.sha256(root, path);
export const mkdir = (root, path) => box().fs.mkdir(root, path);
export const copyTree = (fromRoot, from, toRoot, to) => box().fs.copyTree(fromRoot, from, toRoot, to);
export const removeTree = (root, path) => box().fs.removeTree(root, path);
export const freeBytes = (root) => box().fs.freeBytes(root);
// system
export const getVersion = () => box().system("version");
export const getInfo = () => box().system("info");
export const getMetrics = () => box().system("metrics");
export const networkDiagnostics = () => JSON.stringify(box().system("networkDiagnostics"));
// download
export const fetch = (request) => box().download(request);
// archive
export const verifySignature = (root, path, version, signature) => box().archive.verifySignature(root, path, version, signature);
export const checkAppRelease = (version) => box().archive.checkAppRelease(version);
export const extractTarGz = (srcRoot, srcPath, destRoot, destPath, skip) => box().archive.extractTarGz(srcRoot, srcPath, destRoot, destPath, skip);
// agent-update
export const stageAgentRelease = (root, path, version, signature, deploymentId) =>
  box().agentUpdate.stageAgentRelease(root, path, version, signature, deploymentId);
export const rollbackAgentRelease = (version) => box().agentUpdate.rollbackAgentRelease(version);
// local-app
export const notify = (event, payload) => box().localApp.notify(event, payload);
// logs
export const journalTail = (unit, lines) => box().logsHost.journalTail(unit, lines);
export const agentLogTail = (lines) => box().logsHost.agentLogTail(lines);
export const fileTail = (root, path, lines) => box().logsHost.fileTail(root, path, lines);
// power
export const scheduleReboot = (delaySecs) => box().power.scheduleReboot(delaySecs);
// services
export const start = (name) => box().services.start(name);
export const stop = (name) => box().services.stop(name);
export const restart = (name) => box().services.restart(name);
export const status = (name) => box().services.status(name);
export const isAgent = (name) => box().services.isAgent(name);
export const settleSecs = () => box().services.settleSecs();
export const healthCheck = () => box().services.healthCheck();
