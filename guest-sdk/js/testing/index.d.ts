// Types of @neopro/guest-sdk/testing (index.js).
import type { Handler, Root, ErrorKind } from "../index.js";

export interface FakeBoxOptions {
  /** Path of the component's manifest (.toml): its name and [grants]. */
  manifest?: string;
  /** Grants as in the manifest, when no manifest is given. */
  grants?: {
    files?: Partial<Record<Root, "ro" | "rw">>;
    system?: boolean;
    "config-store"?: "ro" | "rw";
    download?: { hosts: string[] };
    services?: string[];
    logs?: { units?: string[]; "agent-log"?: boolean };
    "may-reboot"?: boolean;
    "local-app"?: boolean;
    "agent-update"?: boolean;
  };
  name?: string;
  /** `{"videos/Match/a.mp4": contents}` */
  files?: Record<string, string | Uint8Array>;
  /** configuration.json; undefined: none yet. */
  config?: unknown;
  /** What download.fetch serves, by URL. */
  downloads?: Record<string, string | Uint8Array>;
  /** system.version().version */
  version?: string;
  freeBytes?: number;
  /** MANAGED_SERVICES of the box (default: the agent's default list). */
  managedServices?: string[];
  /** AGENT_SERVICE (default neopro-runtime). */
  agentService?: string;
  /** Units' states as `services.status` reads them (default inactive). */
  services?: Record<string, string>;
  /** Units whose systemctl calls fail, with systemctl's message. */
  serviceFailures?: Record<string, string>;
  /** What the health URL answers: a status code, "down", or undefined for no URL. */
  health?: number | "down";
  healthUrl?: string;
  /** UPDATE_SETTLE_SECS (default 10). */
  settleSecs?: number;
  /** "down": the web app does not answer `local-app.notify`. */
  localApp?: "down";
  localAppUrl?: string;
  /** Journal text by unit, for `logs.journal-tail`. */
  journal?: Record<string, string>;
  /** The agent's log (LOG_PATH); undefined: it does not exist yet. */
  agentLog?: string;
  agentLogPath?: string;
  /** UPDATE_TRUSTED_KEYS: `ed25519:<64 hex>` public keys. */
  updateKeys?: string[];
  /** UPDATE_ALLOW_DOWNGRADE. */
  allowDowngrade?: boolean;
  /** The running agent: its version, the one it replaced, the newest committed. */
  agent?: { version?: string; previous?: string; highest?: string };
  /** What `archive.extract-tar-gz` extracts at most (MAX_DOWNLOAD_SIZE × 4). */
  maxExtractBytes?: number;
}

/** What the box does once the command's result is delivered. */
export type FollowUp =
  | { action: "restart"; unit: string; waitSecs: number }
  | { action: "reboot"; waitSecs: number }
  | { action: "agent-switch"; version: string }
  | { action: "agent-rollback"; version: string };

export type RunOutcome =
  | { ok: true; result: any }
  | { ok: false; kind: ErrorKind; message: string };

export interface FakeBox {
  readonly name: string;
  readonly logs: { level: string; message: string }[];
  readonly progress: { percent: number; detail: unknown }[];
  /** Reboots, restarts of the agent and agent switches scheduled. */
  readonly followUps: FollowUp[];
  /** `local-app.notify` calls that reached the web app. */
  readonly notifications: { event: string; payload: unknown }[];
  /** systemctl calls made. */
  readonly serviceCalls: { action: "start" | "stop" | "restart"; unit: string }[];
  serviceState(unit: string): string;
  files(): Record<string, string>;
  config(): unknown;
  run(handler: Handler, data?: object | string, command?: { commandType?: string; id?: string }): RunOutcome;
}

export declare function fakeBox(options?: FakeBoxOptions): FakeBox;
export declare function parseManifest(text: string): { name?: string; grants: Record<string, unknown> };

/** A .tar.gz of `entries` (files, folders, links, FIFOs), to put in a fake box. */
export declare function tarGz(
  entries: ({ path: string; mode?: number } & ({ data: string | Uint8Array } | { dir: true } | { symlink: string } | { hardlink: string } | { fifo: true }))[],
): Uint8Array;
/** -1, 0 or 1 as the agent orders versions; undefined when they cannot be ordered. */
export declare function compareVersions(a: string, b: string): -1 | 0 | 1 | undefined;
