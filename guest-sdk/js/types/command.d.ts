/// <reference path="./interfaces/neopro-agent-agent-update.d.ts" />
/// <reference path="./interfaces/neopro-agent-archive.d.ts" />
/// <reference path="./interfaces/neopro-agent-config-store.d.ts" />
/// <reference path="./interfaces/neopro-agent-download.d.ts" />
/// <reference path="./interfaces/neopro-agent-files.d.ts" />
/// <reference path="./interfaces/neopro-agent-handler.d.ts" />
/// <reference path="./interfaces/neopro-agent-local-app.d.ts" />
/// <reference path="./interfaces/neopro-agent-log.d.ts" />
/// <reference path="./interfaces/neopro-agent-logs.d.ts" />
/// <reference path="./interfaces/neopro-agent-power.d.ts" />
/// <reference path="./interfaces/neopro-agent-progress.d.ts" />
/// <reference path="./interfaces/neopro-agent-services.d.ts" />
/// <reference path="./interfaces/neopro-agent-system.d.ts" />
/// <reference path="./interfaces/neopro-agent-types.d.ts" />
declare module 'neopro:agent/command@0.2.0' {
  export type * as NeoproAgentAgentUpdate020 from 'neopro:agent/agent-update@0.2.0'; // import neopro:agent/agent-update@0.2.0
  export type * as NeoproAgentArchive020 from 'neopro:agent/archive@0.2.0'; // import neopro:agent/archive@0.2.0
  export type * as NeoproAgentConfigStore020 from 'neopro:agent/config-store@0.2.0'; // import neopro:agent/config-store@0.2.0
  export type * as NeoproAgentDownload020 from 'neopro:agent/download@0.2.0'; // import neopro:agent/download@0.2.0
  export type * as NeoproAgentFiles020 from 'neopro:agent/files@0.2.0'; // import neopro:agent/files@0.2.0
  export type * as NeoproAgentLocalApp020 from 'neopro:agent/local-app@0.2.0'; // import neopro:agent/local-app@0.2.0
  export type * as NeoproAgentLog020 from 'neopro:agent/log@0.2.0'; // import neopro:agent/log@0.2.0
  export type * as NeoproAgentLogs020 from 'neopro:agent/logs@0.2.0'; // import neopro:agent/logs@0.2.0
  export type * as NeoproAgentPower020 from 'neopro:agent/power@0.2.0'; // import neopro:agent/power@0.2.0
  export type * as NeoproAgentProgress020 from 'neopro:agent/progress@0.2.0'; // import neopro:agent/progress@0.2.0
  export type * as NeoproAgentServices020 from 'neopro:agent/services@0.2.0'; // import neopro:agent/services@0.2.0
  export type * as NeoproAgentSystem020 from 'neopro:agent/system@0.2.0'; // import neopro:agent/system@0.2.0
  export type * as NeoproAgentTypes020 from 'neopro:agent/types@0.2.0'; // import neopro:agent/types@0.2.0
  export * as handler from 'neopro:agent/handler@0.2.0'; // export neopro:agent/handler@0.2.0
}
