/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/services@0.2.0' {
  /**
   * Starts a unit.
   */
  export function start(name: string): void;
  /**
   * Stops a unit.
   */
  export function stop(name: string): void;
  /**
   * Restarts a unit.
   */
  export function restart(name: string): void;
  /**
   * Asks the box's health URL (`UPDATE_HEALTH_URL`) once, within 5 s:
   * its status code, or none when no URL is configured. No answer is
   * `failed`. Needs at least one unit in the manifest's `services`.
   */
  export function healthCheck(): number | undefined;
  /**
   * How long, in seconds, the NEOPRO units must stay active after an
   * update before it counts as healthy (`UPDATE_SETTLE_SECS`, default 10).
   */
  export function settleSecs(): number;
  /**
   * The unit's active state as systemd names it (`active`, `inactive`, `failed`, ...).
   */
  export function status(name: string): string;
  /**
   * Whether `name` is the agent itself: its unit (`AGENT_SERVICE`) or
   * the upstream name `neopro-sync-agent`, which the server still sends.
   * Restarting it answers first and restarts once the result is delivered.
   */
  export function isAgent(name: string): boolean;
  export type Error = import('neopro:agent/types@0.2.0').Error;
}
