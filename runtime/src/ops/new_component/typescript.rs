//! The TypeScript project: a package whose build (`npm run build`, jco on
//! QuickJS) writes `dist/<name>.wasm` with its manifest beside it. The SDK
//! is vendored as `neopro-guest-sdk/` (installed as a package, so its pinned
//! toolchain ends up in the project's lockfile) and the WIT as `wit/`.

use super::vendored::JS_SDK;
use super::{Names, ProjectFile};
use std::path::PathBuf;

pub(crate) fn files(names: &Names) -> Vec<ProjectFile> {
    let template = |path: &str, text: &str| (PathBuf::from(path), names.fill(text));
    let mut files = vec![
        template(
            "package.json",
            include_str!("templates/ts/package.json.tmpl"),
        ),
        template(".npmrc", include_str!("templates/ts/npmrc.tmpl")),
        template(".gitignore", include_str!("templates/ts/gitignore.tmpl")),
        template(
            "tsconfig.json",
            include_str!("templates/ts/tsconfig.json.tmpl"),
        ),
        template(
            "tsconfig.test.json",
            include_str!("templates/ts/tsconfig.test.json.tmpl"),
        ),
        template(
            &format!("{}.toml", names.component),
            include_str!("templates/ts/manifest.toml.tmpl"),
        ),
        template(
            "src/index.ts",
            include_str!("templates/ts/src/index.ts.tmpl"),
        ),
        template(
            "src/count.ts",
            include_str!("templates/ts/src/count.ts.tmpl"),
        ),
        template(
            "test/count.test.ts",
            include_str!("templates/ts/test/count.test.ts.tmpl"),
        ),
        template(
            "test/index.test.ts",
            include_str!("templates/ts/test/index.test.ts.tmpl"),
        ),
        template("README.md", include_str!("templates/ts/README.md.tmpl")),
    ];
    files.extend(JS_SDK.iter().map(|(path, text)| {
        (
            PathBuf::from("neopro-guest-sdk").join(path),
            (*text).to_owned(),
        )
    }));
    files.extend(super::rust::wit_files());
    files
}

pub(crate) fn next_steps(names: &Names) -> Vec<String> {
    vec![
        format!("cd {}", names.component),
        "npm install".to_owned(),
        "npm test".to_owned(),
        "npm run build".to_owned(),
        format!(
            "neopro-runtime run-component dist/{}.wasm --config site.conf",
            names.component
        ),
    ]
}
