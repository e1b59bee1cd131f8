/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/agent-update@0.2.0' {
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
  export type Error = import('neopro:agent/types@0.2.0').Error;
  export type Root = import('neopro:agent/types@0.2.0').Root;
}
