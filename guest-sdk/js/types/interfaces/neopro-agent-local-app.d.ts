/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/local-app@0.2.0' {
  /**
   * Emits `event` (a-z, 0-9 and `_`) with an optional JSON payload, then
   * disconnects. Gives up after 5 s; a web app that is down is `failed`,
   * which components usually log and ignore. Needs `local-app = true`.
   */
  export function notify(event: string, payload: string | undefined): void;
  export type Error = import('neopro:agent/types@0.2.0').Error;
}
