/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/power@0.2.0' {
  /**
   * Schedules a reboot once the current command's result has been delivered
   * to the central server (or after `delay-secs` if the link is down).
   */
  export function scheduleReboot(delaySecs: number): void;
  export type Error = import('neopro:agent/types@0.2.0').Error;
}
