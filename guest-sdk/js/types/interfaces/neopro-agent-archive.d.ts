/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/archive@0.1.0' {
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
   * An agent release is an archive whose first entry is
   * `agent-release.json` (or a signed release manifest of kind
   * `agent-release`, then `agent-release.json`). When `path` is one,
   * checks it — a signature by `UPDATE_TRUSTED_KEYS` is always required
   * (`signature`, or the embedded manifest, whose entries are checked as
   * the release is extracted into its slot), its architecture must be
   * the box's, its version newer (older only with UPDATE_ALLOW_DOWNGRADE)
   * — puts it in a slot of the agent's state folder and schedules the
   * switch: the agent restarts into it once this command ends, and the
   * new agent sends this command's result. Returns the staged version,
   * or none when `path` is not an agent release (nothing done). A refused
   * release changes nothing. Needs `agent-update = true` and read access
   * to the root.
   */
  export function stageAgentRelease(root: Root, path: string, version: string, signature: string | undefined, deploymentId: string | undefined): string | undefined;
  /**
   * The downgrade rule of an app release (one that is not an agent
   * release), checked once the download tells which it is: refused
   * (not-permitted) when `version` is older than the installed release
   * (`NEOPRO_ROOT/VERSION`) unless UPDATE_ALLOW_DOWNGRADE=true in
   * site.conf. Needs read access to `neopro-root`.
   */
  export function checkAppRelease(version: string): void;
  /**
   * `rollback_update` of an agent update. When the running agent is
   * `version`, committed by an agent update, schedules the switch back to
   * the agent it replaced (that version's slot, or the packaged agent):
   * the agent restarts into it once this command ends, and that agent
   * sends this command's result. Returns the version that comes back, or
   * none when `version` is not the running agent (its update failed and
   * was undone already, or another update followed): nothing changes.
   * Needs `agent-update = true`.
   */
  export function rollbackAgentRelease(version: string): string | undefined;
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
  export type Error = import('neopro:agent/types@0.1.0').Error;
  export type Root = import('neopro:agent/types@0.1.0').Root;
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
