//! The guest SDK sources and the WIT package, compiled into the binary so
//! `component new` can vendor them into a project (a unit test checks that
//! nothing of `guest-sdk/` or `wit/` is missing here).

/// `guest-sdk/src/*.rs`, by file name.
pub const RUST_SDK: &[(&str, &str)] = &[
    (
        "agent_update.rs",
        include_str!("../../../guest-sdk/src/agent_update.rs"),
    ),
    (
        "archive.rs",
        include_str!("../../../guest-sdk/src/archive.rs"),
    ),
    (
        "command.rs",
        include_str!("../../../guest-sdk/src/command.rs"),
    ),
    (
        "config_store.rs",
        include_str!("../../../guest-sdk/src/config_store.rs"),
    ),
    (
        "download.rs",
        include_str!("../../../guest-sdk/src/download.rs"),
    ),
    ("error.rs", include_str!("../../../guest-sdk/src/error.rs")),
    ("files.rs", include_str!("../../../guest-sdk/src/files.rs")),
    ("lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    (
        "local_app.rs",
        include_str!("../../../guest-sdk/src/local_app.rs"),
    ),
    ("log.rs", include_str!("../../../guest-sdk/src/log.rs")),
    ("logs.rs", include_str!("../../../guest-sdk/src/logs.rs")),
    ("power.rs", include_str!("../../../guest-sdk/src/power.rs")),
    (
        "progress.rs",
        include_str!("../../../guest-sdk/src/progress.rs"),
    ),
    (
        "services.rs",
        include_str!("../../../guest-sdk/src/services.rs"),
    ),
    (
        "system.rs",
        include_str!("../../../guest-sdk/src/system.rs"),
    ),
    ("time.rs", include_str!("../../../guest-sdk/src/time.rs")),
];

/// `wit/*.wit`, by file name.
pub const WIT: &[(&str, &str)] = &[
    (
        "agent-update.wit",
        include_str!("../../../wit/agent-update.wit"),
    ),
    ("archive.wit", include_str!("../../../wit/archive.wit")),
    (
        "config-store.wit",
        include_str!("../../../wit/config-store.wit"),
    ),
    ("download.wit", include_str!("../../../wit/download.wit")),
    ("files.wit", include_str!("../../../wit/files.wit")),
    ("handler.wit", include_str!("../../../wit/handler.wit")),
    ("local-app.wit", include_str!("../../../wit/local-app.wit")),
    ("log.wit", include_str!("../../../wit/log.wit")),
    ("logs.wit", include_str!("../../../wit/logs.wit")),
    ("power.wit", include_str!("../../../wit/power.wit")),
    ("progress.wit", include_str!("../../../wit/progress.wit")),
    ("services.wit", include_str!("../../../wit/services.wit")),
    ("system.wit", include_str!("../../../wit/system.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("world.wit", include_str!("../../../wit/world.wit")),
];

/// The TypeScript SDK (`guest-sdk/js`), by path inside the package.
pub const JS_SDK: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../../guest-sdk/js/package.json"),
    ),
    ("index.js", include_str!("../../../guest-sdk/js/index.js")),
    (
        "index.d.ts",
        include_str!("../../../guest-sdk/js/index.d.ts"),
    ),
    (
        "build/bundle-config.mjs",
        include_str!("../../../guest-sdk/js/build/bundle-config.mjs"),
    ),
    (
        "build/cli.mjs",
        include_str!("../../../guest-sdk/js/build/cli.mjs"),
    ),
    (
        "build/componentize-qjs-pinned.mjs",
        include_str!("../../../guest-sdk/js/build/componentize-qjs-pinned.mjs"),
    ),
    (
        "build/pinned-runtime.mjs",
        include_str!("../../../guest-sdk/js/build/pinned-runtime.mjs"),
    ),
    (
        "build/preopens.mjs",
        include_str!("../../../guest-sdk/js/build/preopens.mjs"),
    ),
    (
        "build/shim-resolve.mjs",
        include_str!("../../../guest-sdk/js/build/shim-resolve.mjs"),
    ),
    (
        "testing/index.d.ts",
        include_str!("../../../guest-sdk/js/testing/index.d.ts"),
    ),
    (
        "testing/index.js",
        include_str!("../../../guest-sdk/js/testing/index.js"),
    ),
    (
        "testing/host.mjs",
        include_str!("../../../guest-sdk/js/testing/host.mjs"),
    ),
    (
        "testing/operations.mjs",
        include_str!("../../../guest-sdk/js/testing/operations.mjs"),
    ),
    (
        "testing/tar.mjs",
        include_str!("../../../guest-sdk/js/testing/tar.mjs"),
    ),
    (
        "testing/register.mjs",
        include_str!("../../../guest-sdk/js/testing/register.mjs"),
    ),
    (
        "types/command.d.ts",
        include_str!("../../../guest-sdk/js/types/command.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-agent-update.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-agent-update.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-archive.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-archive.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-config-store.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-config-store.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-download.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-download.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-files.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-files.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-handler.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-handler.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-local-app.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-local-app.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-log.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-log.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-logs.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-logs.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-power.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-power.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-progress.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-progress.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-services.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-services.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-system.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-system.d.ts"),
    ),
    (
        "types/interfaces/neopro-agent-types.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/neopro-agent-types.d.ts"),
    ),
];
