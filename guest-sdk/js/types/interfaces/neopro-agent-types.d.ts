declare module 'neopro:agent/types@0.2.0' {
  /**
   * Why a host call or a command failed. Each case carries a message written
   * for a site operator: it ends up verbatim in the `command_result` the
   * central server shows on its dashboard.
   */
  export type Error = ErrorInvalidInput | ErrorNotPermitted | ErrorNotFound | ErrorChecksumMismatch | ErrorTooLarge | ErrorTimeout | ErrorIo | ErrorFailed;
  /**
   * The command data or a call argument is malformed (bad JSON, bad name, bad path).
   */
  export interface ErrorInvalidInput {
    tag: 'invalid-input',
    val: string,
  }
  /**
   * The component's manifest does not grant this call; the message names the missing grant.
   */
  export interface ErrorNotPermitted {
    tag: 'not-permitted',
    val: string,
  }
  /**
   * The file, directory, service or resource does not exist.
   */
  export interface ErrorNotFound {
    tag: 'not-found',
    val: string,
  }
  /**
   * Downloaded or supplied bytes do not match the expected sha256.
   */
  export interface ErrorChecksumMismatch {
    tag: 'checksum-mismatch',
    val: string,
  }
  /**
   * A size limit (download cap, read cap, free-space reserve) would be exceeded.
   */
  export interface ErrorTooLarge {
    tag: 'too-large',
    val: string,
  }
  /**
   * The operation, or the whole command, ran past its time limit.
   */
  export interface ErrorTimeout {
    tag: 'timeout',
    val: string,
  }
  /**
   * The box's disk or kernel refused an operation.
   */
  export interface ErrorIo {
    tag: 'io',
    val: string,
  }
  /**
   * Anything else; the message says what happened.
   */
  export interface ErrorFailed {
    tag: 'failed',
    val: string,
  }
  /**
   * One command as received from the central server.
   */
  export interface Command {
    /**
     * Server-generated command id (a UUID), unique per command.
     */
    id: string,
    /**
     * Command type, e.g. `get_system_info`.
     */
    commandType: string,
    /**
     * The command's `data` object as JSON text (`{}` when the server sent none).
     */
    data: string,
  }
  /**
   * Which named folder of the box a path is relative to. The host maps each
   * root to a directory from site.conf; components never see absolute paths.
   * # Variants
   * 
   * ## `"videos"`
   * 
   * `VIDEOS_PATH`: the club's video library.
   * ## `"config"`
   * 
   * The folder that holds `CONFIG_PATH` (the web app's `configuration.json`).
   * ## `"backups"`
   * 
   * `BACKUP_PATH`: software and configuration backups.
   * ## `"neopro-root"`
   * 
   * `NEOPRO_ROOT`: the installed NEOPRO application (webapp, server, admin, VERSION).
   * ## `"staging"`
   * 
   * `STATE_PATH/staging`: scratch space for downloads and extraction.
   * ## `"logs"`
   * 
   * The folder that holds `LOG_PATH` (the agent's own log files).
   * ## `"hostapd"`
   * 
   * The folder that holds `HOSTAPD_CONF` (the Wi-Fi hotspot's
   * `hostapd.conf`, by default in `/etc/hostapd`).
   */
  export type Root = 'videos' | 'config' | 'backups' | 'neopro-root' | 'staging' | 'logs' | 'hostapd';
}
