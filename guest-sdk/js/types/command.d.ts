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
declare module 'neopro:agent/command@0.1.0' {
  export type * as NeoproAgentArchive010 from 'neopro:agent/archive@0.1.0'; // import neopro:agent/archive@0.1.0
  export type * as NeoproAgentConfigStore010 from 'neopro:agent/config-store@0.1.0'; // import neopro:agent/config-store@0.1.0
  export type * as NeoproAgentDownload010 from 'neopro:agent/download@0.1.0'; // import neopro:agent/download@0.1.0
  export type * as NeoproAgentFiles010 from 'neopro:agent/files@0.1.0'; // import neopro:agent/files@0.1.0
  export type * as NeoproAgentLocalApp010 from 'neopro:agent/local-app@0.1.0'; // import neopro:agent/local-app@0.1.0
  export type * as NeoproAgentLog010 from 'neopro:agent/log@0.1.0'; // import neopro:agent/log@0.1.0
  export type * as NeoproAgentLogs010 from 'neopro:agent/logs@0.1.0'; // import neopro:agent/logs@0.1.0
  export type * as NeoproAgentPower010 from 'neopro:agent/power@0.1.0'; // import neopro:agent/power@0.1.0
  export type * as NeoproAgentProgress010 from 'neopro:agent/progress@0.1.0'; // import neopro:agent/progress@0.1.0
  export type * as NeoproAgentServices010 from 'neopro:agent/services@0.1.0'; // import neopro:agent/services@0.1.0
  export type * as NeoproAgentSystem010 from 'neopro:agent/system@0.1.0'; // import neopro:agent/system@0.1.0
  export type * as NeoproAgentTypes010 from 'neopro:agent/types@0.1.0'; // import neopro:agent/types@0.1.0
  export * as handler from 'neopro:agent/handler@0.1.0'; // export neopro:agent/handler@0.1.0
}
