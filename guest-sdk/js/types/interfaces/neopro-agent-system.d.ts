/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/system@0.2.0' {
  /**
   * Samples the live metrics. Needs the `system` grant.
   */
  export function getMetrics(): Metrics;
  /**
   * Describes the hardware, OS and network interfaces. Needs the `system` grant.
   */
  export function getInfo(): Info;
  /**
   * Network checks (gateway, internet, DNS, the central server,
   * interfaces, Wi-Fi, link stability), all in parallel and finished
   * within 25 s. Returns the JSON object of the `network_diagnostics`
   * answer (upstream shape, without `success`). Needs the `system` grant.
   */
  export function networkDiagnostics(): string;
  /**
   * Reads the installed NEOPRO version (release.json, webapp/version.json,
   * VERSION, webapp/package.json, first found wins). Needs the `system` grant.
   */
  export function getVersion(): VersionInfo;
  export type Error = import('neopro:agent/types@0.2.0').Error;
  /**
   * Live health metrics.
   */
  export interface Metrics {
    /**
     * CPU busy percentage since the previous sample (since boot on the first).
     */
    cpu: number,
    /**
     * Memory in use, percent, computed from MemAvailable (page cache counts as free).
     */
    memory: number,
    /**
     * SoC temperature in °C from the first thermal zone, 0 when absent.
     */
    temperature: number,
    /**
     * Use of the filesystem holding `/`, percent.
     */
    disk: number,
    /**
     * Seconds since boot.
     */
    uptime: bigint,
    /**
     * The box's primary IPv4 address (wired before Wi-Fi), if any.
     */
    localIp?: string,
  }
  /**
   * One network interface.
   */
  export interface InterfaceInfo {
    name: string,
    ip4?: string,
    ip6?: string,
    mac?: string,
    /**
     * `wired`, `wireless`, `loopback` or `virtual`, guessed from the name.
     */
    kind: string,
  }
  /**
   * Static description of the box.
   */
  export interface Info {
    hostname?: string,
    /**
     * Distribution name and release, e.g. `Debian GNU/Linux 12 (bookworm)`.
     */
    os?: string,
    kernel?: string,
    architecture: string,
    cpuModel?: string,
    cpuCores?: number,
    /**
     * CPU frequency in MHz.
     */
    cpuSpeedMhz?: bigint,
    totalMemory?: bigint,
    interfaces: Array<InterfaceInfo>,
    /**
     * Established TCP connections (IPv4 and IPv6), when /proc tells.
     */
    activeConnections?: number,
    /**
     * Raspberry Pi board revision code from /proc/cpuinfo, when running on one.
     */
    raspberryRevision?: string,
    /**
     * Raspberry Pi serial number, when running on one.
     */
    raspberrySerial?: string,
    /**
     * Device-tree model string, e.g. `Raspberry Pi 4 Model B Rev 1.4`.
     */
    model?: string,
  }
  /**
   * Version of the installed NEOPRO software, read from NEOPRO_ROOT.
   */
  export interface VersionInfo {
    version: string,
    commit?: string,
    buildDate?: string,
    /**
     * Which file the version came from, or `unknown`.
     */
    source: string,
  }
}
