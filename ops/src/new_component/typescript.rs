//! The TypeScript project: a package whose build (`npm run build`, jco on
//! QuickJS) writes `dist/<name>.wasm` with its manifest beside it. The SDK
//! is vendored as `neopro-guest-sdk/` (installed as a package, so its pinned
//! toolchain ends up in the project's lockfile) and the WIT as `wit/`.

use super::vendored::JS_SDK;
use super::{Names, NewComponentError, ProjectFile};
use serde_json::Value;
use std::path::PathBuf;

/// The template's lockfile: the same package.json dependencies, the SDK
/// from `file:../js` instead of the vendored `file:neopro-guest-sdk`.
const TEMPLATE_LOCK: &str = include_str!("../../../guest-sdk/template-ts/package-lock.json");
const TEMPLATE_SDK: &str = "file:../js";
const VENDORED_SDK: &str = "file:neopro-guest-sdk";

/// The project's package-lock.json: the template's (CI installs it with
/// `npm ci`), renamed, with the SDK where the project vendors it. So a new
/// project installs the exact toolchain this agent was tested with.
pub(crate) fn package_lock(names: &Names, version: &str) -> Result<String, NewComponentError> {
    let bad = |what: &str| NewComponentError::Lockfile(what.to_owned());
    let mut lock: Value = serde_json::from_str(TEMPLATE_LOCK)
        .map_err(|e| NewComponentError::Lockfile(e.to_string()))?;
    let name = Value::String(names.component.clone());
    let version = Value::String(version.to_owned());
    let top = lock
        .as_object_mut()
        .ok_or_else(|| bad("not a JSON object"))?;
    top.insert("name".to_owned(), name.clone());
    top.insert("version".to_owned(), version.clone());
    let packages = top
        .get_mut("packages")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad("no \"packages\""))?;
    let root = packages
        .get_mut("")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad("no root package"))?;
    root.insert("name".to_owned(), name);
    root.insert("version".to_owned(), version);
    let sdk = root
        .get_mut("devDependencies")
        .and_then(|d| d.get_mut("@neopro/guest-sdk"))
        .ok_or_else(|| bad("no devDependency @neopro/guest-sdk"))?;
    if sdk != TEMPLATE_SDK {
        return Err(bad(&format!(
            "@neopro/guest-sdk is {sdk}, not {TEMPLATE_SDK}"
        )));
    }
    *sdk = Value::String(VENDORED_SDK.to_owned());
    let resolved = packages
        .get_mut("node_modules/@neopro/guest-sdk")
        .and_then(|p| p.get_mut("resolved"))
        .ok_or_else(|| bad("no node_modules/@neopro/guest-sdk entry"))?;
    *resolved = Value::String(VENDORED_SDK.to_owned());
    let mut text = serde_json::to_string_pretty(&lock)
        .map_err(|e| NewComponentError::Lockfile(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

pub(crate) fn files(names: &Names) -> Result<Vec<ProjectFile>, NewComponentError> {
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
        (
            PathBuf::from("package-lock.json"),
            package_lock(names, "0.1.0")?,
        ),
    ];
    files.extend(JS_SDK.iter().map(|(path, text)| {
        (
            PathBuf::from("neopro-guest-sdk").join(path),
            (*text).to_owned(),
        )
    }));
    files.extend(super::rust::wit_files());
    Ok(files)
}

pub(crate) fn next_steps(names: &Names) -> Vec<String> {
    vec![
        format!("cd {}", names.component),
        "npm ci".to_owned(),
        "npm test".to_owned(),
        "npm run build".to_owned(),
        format!(
            "neopro-runtime run-component dist/{}.wasm --config site.conf",
            names.component
        ),
    ]
}
