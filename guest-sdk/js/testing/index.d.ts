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
}

export type RunOutcome =
  | { ok: true; result: any }
  | { ok: false; kind: ErrorKind; message: string };

export interface FakeBox {
  readonly name: string;
  readonly logs: { level: string; message: string }[];
  readonly progress: { percent: number; detail: unknown }[];
  files(): Record<string, string>;
  config(): unknown;
  run(handler: Handler, data?: object | string, command?: { commandType?: string; id?: string }): RunOutcome;
}

export declare function fakeBox(options?: FakeBoxOptions): FakeBox;
export declare function parseManifest(text: string): { name?: string; grants: Record<string, unknown> };
