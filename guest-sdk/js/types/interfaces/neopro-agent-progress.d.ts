/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/progress@0.2.0' {
  /**
   * Reports progress. `percent` is clamped to 0..=100 and never goes
   * backwards; `detail` is a JSON object whose fields are merged into the
   * event (e.g. `{"videoId": "…"}`), or an empty string. The host throttles
   * reports, so calling it for every chunk is fine; a detail with an
   * `error` field is always sent, and so is one naming a new `stage`
   * (a milestone such as "downloaded"; it may repeat the last percent).
   * The host adds `status` (in_progress, completed at 100 % or with
   * `completed: true`, failed with `error`) unless the detail has one.
   */
  export function report(percent: number, detail: string): void;
  export type Error = import('neopro:agent/types@0.2.0').Error;
}
