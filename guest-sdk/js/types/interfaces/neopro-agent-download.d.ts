/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/download@0.2.0' {
  /**
   * Downloads a file. Needs the `download` grant and write access to the
   * root; the parent folder must exist. A partial download is kept next to
   * the target (hidden `.partial` file) and resumed by the next attempt;
   * network errors and 5xx answers are retried; refused before writing if
   * the size is over the limit or the disk would fall under its reserve.
   */
  export function fetch(request: Request): Outcome;
  export type Error = import('neopro:agent/types@0.2.0').Error;
  export type Root = import('neopro:agent/types@0.2.0').Root;
  /**
   * What to fetch and where to put it.
   */
  export interface Request {
    /**
     * `http://` or `https://` URL; other schemes are `invalid-input`.
     */
    url: string,
    /**
     * Destination root and relative path. The file appears at this name
     * only once complete and verified.
     */
    root: Root,
    path: string,
    /**
     * Expected sha256 in hex; a mismatch is `checksum-mismatch` and no file is left.
     */
    sha256?: string,
    /**
     * Upper bound in bytes, lowered by the manifest's download limit.
     */
    maxBytes?: bigint,
    /**
     * When set (a JSON object), progress events are emitted while
     * downloading, carrying these fields next to `progress` (0..=99,
     * or within `[low, high]` when the object has a `progressRange`
     * field holding those two numbers; that field is not sent).
     */
    progressDetail?: string,
  }
  /**
   * What was written.
   */
  export interface Outcome {
    bytes: bigint,
    /**
     * sha256 of the bytes written, lower-case hex.
     */
    sha256: string,
  }
}
