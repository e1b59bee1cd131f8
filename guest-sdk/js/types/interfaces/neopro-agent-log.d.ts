declare module 'neopro:agent/log@0.2.0' {
  /**
   * Records one log line. Never fails: a full disk must not fail a command.
   */
  export function write(level: Level, message: string): void;
  /**
   * Severity of a log line; the agent's LOG_LEVEL filters them.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
