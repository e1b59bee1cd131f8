// .tar.gz for the test kit: `tarGz(entries)` writes an archive a test
// puts in the fake box (the agent's downloads are such archives), and
// `readTarGz(bytes)` reads one as the fake archive.extract-tar-gz does.
// ustar headers, with GNU long names ('L') and pax path records ('x')
// read; enough for update archives, not a general tar library.
import { gunzipSync, gzipSync } from "node:zlib";

const BLOCK = 512;
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** Entry kinds by tar type flag, as the agent's extractor names them. */
const TYPES = { "0": "file", "\0": "file", "7": "file", "1": "hardlink", "2": "symlink", "3": "device", "4": "device", "5": "directory", "6": "fifo", S: "sparse" };

function octal(text) {
  const t = text.replace(/\0.*$/s, "").trim();
  return t === "" ? 0 : parseInt(t, 8);
}

function field(header, at, length) {
  const bytes = header.subarray(at, at + length);
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end < 0 ? length : end);
}

/**
 * The entries of a .tar.gz: `{ path, kind, data?, target?, mode }` in
 * archive order, `kind` one of file, directory, symlink, hardlink, device,
 * fifo, sparse, other. Throws `{ tag: "invalid-input" }` as the agent does
 * for an archive that is not a valid .tar.gz or a name that is not UTF-8.
 */
export function readTarGz(bytes) {
  let tar;
  try {
    tar = gunzipSync(bytes);
  } catch (e) {
    throw { tag: "invalid-input", val: `the archive is not a valid .tar.gz: ${e.message}` };
  }
  const entries = [];
  let longName;
  let paxPath;
  for (let at = 0; at + BLOCK <= tar.length; ) {
    const header = tar.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) break;
    const size = octal(String.fromCharCode(...header.subarray(124, 136)));
    const type = String.fromCharCode(header[156]);
    const body = tar.subarray(at + BLOCK, at + BLOCK + size);
    if (body.length < size) throw { tag: "invalid-input", val: "the archive is not a valid .tar.gz: truncated entry" };
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    const utf8 = (b) => {
      try {
        return dec.decode(b);
      } catch {
        throw { tag: "invalid-input", val: `the archive entry name ${JSON.stringify(Buffer.from(b).toString("latin1"))} is not valid UTF-8` };
      }
    };
    if (type === "L") {
      longName = utf8(field(body, 0, body.length));
      continue;
    }
    if (type === "x" || type === "g") {
      const record = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(Buffer.from(body).toString("utf8"));
      if (type === "x" && record) paxPath = record[1];
      continue;
    }
    const prefix = utf8(field(header, 345, 155));
    const name = utf8(field(header, 0, 100));
    const path = paxPath ?? longName ?? (prefix ? `${prefix}/${name}` : name);
    longName = undefined;
    paxPath = undefined;
    entries.push({
      path,
      kind: TYPES[type] ?? "other",
      data: TYPES[type] === "file" ? Uint8Array.from(body) : undefined,
      target: utf8(field(header, 157, 100)),
      mode: octal(String.fromCharCode(...header.subarray(100, 108))),
    });
  }
  return entries;
}

function header(name, { type = "0", size = 0, mode = 0o644, target = "" }) {
  const h = new Uint8Array(BLOCK);
  const put = (at, length, text) => h.set(enc.encode(text).subarray(0, length), at);
  const num = (at, length, value) => put(at, length, value.toString(8).padStart(length - 1, "0") + "\0");
  put(0, 100, name);
  num(100, 8, mode);
  num(108, 8, 0);
  num(116, 8, 0);
  num(124, 12, size);
  num(136, 12, 0);
  h.fill(0x20, 148, 156);
  put(156, 1, type);
  put(157, 100, target);
  put(257, 8, "ustar\u000000");
  let sum = 0;
  for (const b of h) sum += b;
  put(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/**
 * A .tar.gz of `entries`, in order: `{ path, data }` a file (string or
 * bytes), `{ path, dir: true }` a folder, `{ path, symlink: target }`,
 * `{ path, hardlink: target }`, `{ path, fifo: true }`. Paths are written
 * as given (absolute or with `..` too: to test the refusals).
 */
export function tarGz(entries) {
  const blocks = [];
  for (const e of entries) {
    let data = new Uint8Array(0);
    let type = "0";
    let target = "";
    if (e.dir) type = "5";
    else if (e.symlink !== undefined) [type, target] = ["2", e.symlink];
    else if (e.hardlink !== undefined) [type, target] = ["1", e.hardlink];
    else if (e.fifo) type = "6";
    else data = typeof e.data === "string" ? enc.encode(e.data) : Uint8Array.from(e.data ?? []);
    const nameBytes = enc.encode(e.path);
    if (nameBytes.length > 100) {
      const long = Uint8Array.from([...nameBytes, 0]);
      blocks.push(header("././@LongLink", { type: "L", size: long.length }), long, new Uint8Array((BLOCK - (long.length % BLOCK)) % BLOCK));
    }
    blocks.push(header(e.path, { type, size: data.length, mode: e.mode ?? (type === "5" ? 0o755 : 0o644), target }));
    blocks.push(data, new Uint8Array((BLOCK - (data.length % BLOCK)) % BLOCK));
  }
  blocks.push(new Uint8Array(BLOCK * 2));
  return new Uint8Array(gzipSync(Buffer.concat(blocks.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)))));
}
