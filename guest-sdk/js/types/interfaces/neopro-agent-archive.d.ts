/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/archive@0.2.0' {
  /**
   * Checks a release against the box's trusted update keys
   * (`UPDATE_TRUSTED_KEYS`): when keys are configured, either `signature`
   * (128 hex digits, ed25519) signs the text
   * `neopro-update:<version>:<sha256 hex of the file>` with one of them,
   * or — with no `signature` — the archive's first entry is a signed
   * release manifest (`neopro-release-manifest.json`, see
   * docs/updates.md) signed by one of them for `version`, whose entries
   * `extract-tar-gz` then checks. Without keys nothing is required, but
   * an embedded manifest must name `version`. Returns the file's sha256.
   * Needs read access to the root.
   */
  export function verifySignature(root: Root, path: string, version: string, signature: string | undefined): string;
  /**
   * The downgrade rule of an app release (one that is not an agent
   * release), checked once the download tells which it is: refused
   * (not-permitted) when `version` is older than the installed release
   * (`NEOPRO_ROOT/VERSION`) unless UPDATE_ALLOW_DOWNGRADE=true in
   * site.conf. Needs read access to `neopro-root`.
   */
  export function checkAppRelease(version: string): void;
  /**
   * Extracts a `.tar.gz` into a folder. Refuses absolute paths, `..`, links
   * pointing outside the destination and device files; entries whose path
   * starts with one of `skip` are left out. An archive opening with a
   * signed release manifest is checked against it while it streams
   * (signer among `UPDATE_TRUSTED_KEYS` when keys are set; every entry
   * listed, of the listed size and sha256, none missing; the manifest
   * itself is not written); a refusal leaves no folder. Needs read
   * access to the source root and write access to the destination root.
   */
  export function extractTarGz(srcRoot: Root, srcPath: string, destRoot: Root, destPath: string, skip: Array<string>): Report;
  export type Error = import('neopro:agent/types@0.2.0').Error;
  export type Root = import('neopro:agent/types@0.2.0').Root;
  /**
   * What an extraction did.
   */
  export interface Report {
    files: bigint,
    bytes: bigint,
    /**
     * Entries skipped because they matched `skip`.
     */
    skipped: Array<string>,
  }
}
