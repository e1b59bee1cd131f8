/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/config-store@0.2.0' {
  /**
   * Reads the current document. A file that is not valid JSON is
   * `invalid-input` (and is left untouched). Needs the grant
   * `config-store = "ro"` (or `"rw"`).
   */
  export function read(): Snapshot;
  /**
   * Replaces the document if it is still at `expected-version`: the JSON is
   * validated, written with 2-space indentation (temp file, fsync, rename),
   * and the previous version is kept as `<name>.backup.json` next to it.
   * Returns the new snapshot. Needs the grant `config-store = "rw"`.
   */
  export function write(json: string, expectedVersion: string): Snapshot;
  export type Error = import('neopro:agent/types@0.2.0').Error;
  /**
   * One version of the document.
   */
  export interface Snapshot {
    /**
     * The JSON text, or none when the file does not exist yet.
     */
    json?: string,
    /**
     * Identifies this version: sha256 (hex) of the bytes on disk, empty
     * when the file does not exist. Pass it back to `write`.
     */
    version: string,
    /**
     * The protocol's `configHash` of the document: first 16 hex digits of
     * sha256 of its `JSON.stringify` form (empty when absent).
     */
    configHash: string,
  }
}
