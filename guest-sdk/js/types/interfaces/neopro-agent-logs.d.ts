/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/logs@0.2.0' {
  /**
   * Last `lines` lines (1..=10000) of a systemd unit's journal. The unit name
   * must be made of unit-name characters only and be granted in the
   * manifest's `logs.units`.
   */
  export function journalTail(unit: string, lines: number): string;
  /**
   * Last `lines` lines (1..=10000) of the agent's own log file (LOG_PATH).
   * Needs `logs.agent-log` in the manifest.
   */
  export function agentLogTail(lines: number): string;
  /**
   * Last `lines` lines (1..=10000) of a text file under a root the component
   * may read; reads at most the file's last 4 MiB.
   */
  export function fileTail(root: Root, path: string, lines: number): string;
  export type Error = import('neopro:agent/types@0.2.0').Error;
  export type Root = import('neopro:agent/types@0.2.0').Root;
}
