// One fake for every neopro:agent interface the SDK imports. Tests steer it
// through globalThis.fakeHost; u64 values come back as BigInt, as
// SpiderMonkey hands them over.
const host = (globalThis.fakeHost ??= {
  logs: [],
  progress: [],
  config: { json: undefined, version: "v0", writes: 0, racesLeft: 0 },
  files: {},
  TextEncoder: globalThis.TextEncoder,
});

const encode = (t) => new host.TextEncoder().encode(t);

export function write(levelOrJson, messageOrVersion) {
  if (typeof messageOrVersion === "string" && ["debug", "info", "warn", "error", "trace"].includes(levelOrJson)) {
    host.logs.push([levelOrJson, messageOrVersion]);
    return;
  }
  // config-store.write(json, expectedVersion)
  const c = host.config;
  if (c.racesLeft > 0) {
    c.racesLeft -= 1;
    c.version = `v${Number(c.version.slice(1)) + 1}`;
    throw { tag: "failed", val: "configuration changed since it was read; read it again" };
  }
  if (messageOrVersion !== c.version) throw { tag: "failed", val: "configuration changed since it was read" };
  c.json = levelOrJson;
  c.writes += 1;
  c.version = `v${Number(c.version.slice(1)) + 1}`;
  return { json: c.json, version: c.version, configHash: "hash-" + c.version };
}

export function read(root, path, maxBytes) {
  if (root === undefined) return { json: host.config.json, version: host.config.version, configHash: "h" };
  const text = host.files[`${root}/${path}`];
  if (text === undefined) throw { tag: "not-found", val: `${path} not found` };
  if (typeof maxBytes !== "bigint") throw new TypeError("u64 argument must be a BigInt here");
  return encode(text);
}

export function report(percent, detail) {
  host.progress.push([percent, detail]);
}

export function listDir(root, path) {
  if (path === "missing") throw { tag: "not-found", val: "no such folder" };
  return [
    { name: "a.mp4", kind: "file", size: 10n },
    { name: "Sub", kind: "directory", size: 4096n },
  ];
}

export function freeBytes(root) {
  host.freeBytesAsked = [...(host.freeBytesAsked ?? []), root];
  return 1000n;
}

export function getVersion() {
  return { version: "2.1.3", source: "VERSION" };
}
