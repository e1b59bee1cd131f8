// Rolldown configuration merged into jco's bundling of the component
// (`jco componentize --bundle-config`): the bundle's source map is turned
// into a line table from bundle lines to the project's own sources
// (`src/index.ts:12`), appended to the bundle as
// `globalThis.__neoproSourceLines`, and the map itself dropped (jco takes
// exactly one file). The SDK reads the table when it turns an exception
// into an error result, so the operator sees the author's file and line.
// Only the project's files are in the table (not node_modules): its size
// follows the author's code, not the libraries'. It also sets
// `globalThis.__neoproComponent`: the SDK reseeds Math.random per command
// only in a built component (see reseedMathRandom in index.js).
import { isAbsolute, relative, resolve, sep } from "node:path";

const project = process.env.NEOPRO_PROJECT ?? process.cwd();
const outDir = resolve(project, "dist");
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** The source map's `mappings` as, per bundle line, [column, source, line] segments. */
export function decodeMappings(mappings) {
  const lines = [];
  let source = 0, origLine = 0, origCol = 0;
  for (const text of mappings.split(";")) {
    const segments = [];
    let col = 0;
    for (const segment of text.split(",")) {
      if (segment === "") continue;
      const fields = [];
      let value = 0, shift = 0;
      for (const ch of segment) {
        const digit = B64.indexOf(ch);
        if (digit < 0) throw new Error(`bad source map character ${ch}`);
        value += (digit & 31) << shift;
        if (digit & 32) {
          shift += 5;
        } else {
          fields.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      col += fields[0];
      if (fields.length >= 4) {
        source += fields[1];
        origLine += fields[2];
        origCol += fields[3];
        segments.push([col, source, origLine]);
      }
    }
    lines.push(segments);
  }
  return lines;
}

/** `{ files, lines }`: `lines` holds [bundle line, file index, source line]
 * triples (1-based lines) for the bundle lines that come from the project. */
export function lineTable(map, mapDir = outDir, root = project) {
  const files = [];
  const index = new Map();
  const wanted = map.sources.map((s) => {
    const abs = resolve(mapDir, map.sourceRoot ?? "", s);
    const rel = relative(root, abs);
    if (rel.startsWith("..") || isAbsolute(rel) || rel.split(sep).includes("node_modules")) return -1;
    const name = rel.split(sep).join("/");
    if (!index.has(name)) {
      index.set(name, files.length);
      files.push(name);
    }
    return index.get(name);
  });
  const lines = [];
  decodeMappings(map.mappings).forEach((segments, i) => {
    const hit = segments.find(([, source]) => wanted[source] >= 0);
    if (hit) lines.push(i + 1, wanted[hit[1]], hit[2] + 1);
  });
  return { files, lines };
}

export default {
  // The host interfaces: imports of the component, not modules.
  external: [/^neopro:/],
  output: { sourcemap: true, dir: outDir },
  plugins: [
    {
      name: "neopro-source-lines",
      generateBundle(_options, bundle) {
        for (const [name, item] of Object.entries(bundle)) {
          if (item.type === "asset" && name.endsWith(".map")) {
            delete bundle[name];
          } else if (item.type === "chunk" && item.map) {
            const table = JSON.stringify(lineTable(item.map));
            item.code = item.code.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n") + `globalThis.__neoproSourceLines = ${table};\nglobalThis.__neoproComponent = true;\n`;
          }
        }
      },
    },
  ],
};
