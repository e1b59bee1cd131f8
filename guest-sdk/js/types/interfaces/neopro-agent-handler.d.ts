/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/handler@0.2.0' {
  /**
   * Runs one command to completion. On success returns the `result` object of
   * the `command_result` as JSON text; on failure an error whose message is
   * sent to the server as the result's `error` string.
   */
  export function execute(command: Command): string;
  export type Command = import('neopro:agent/types@0.2.0').Command;
  export type Error = import('neopro:agent/types@0.2.0').Error;
}
