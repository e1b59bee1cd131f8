//! `neopro-runtime precompile-package --target <triple> <components> <out>`
//! (hidden; run by `cargo xtask package` on the build machine): the built-in
//! components compiled for the package's boxes, so a box's first start
//! loads them instead of compiling each one (Pulley bytecode on a 32-bit Pi).
//! The files are named as that box's agent looks for them in
//! `<components>/precompiled/` (`sandbox::packaged_artifact`).

use neopro_runtime::sandbox::{CodeTarget, SandboxError, packaged_artifact};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PrecompileError {
    #[error(
        "packages for {0} ship no precompiled components (only armv7-unknown-linux-gnueabihf: \
         Pulley bytecode; native code for another CPU needs wasmtime's all-arch feature)"
    )]
    Unsupported(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Compile { path: PathBuf, source: SandboxError },
    #[error("no component (.wasm) in {0}")]
    Empty(PathBuf),
}

/// Compiles each `<name>.wasm` of `components` into `out` (emptied first);
/// prints `<name>.wasm -> <artifact>` per component.
pub fn run(triple: &str, components: &Path, out: &Path) -> Result<(), PrecompileError> {
    let target = CodeTarget::for_package(triple)
        .ok_or_else(|| PrecompileError::Unsupported(triple.into()))?;
    let mut wasms: Vec<PathBuf> = std::fs::read_dir(components)
        .map_err(|source| PrecompileError::Read {
            path: components.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    wasms.sort();
    if wasms.is_empty() {
        return Err(PrecompileError::Empty(components.to_owned()));
    }
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).map_err(|source| PrecompileError::Write { path, source })
    };
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|source| PrecompileError::Write {
            path: out.to_owned(),
            source,
        })?;
    }
    std::fs::create_dir_all(out).map_err(|source| PrecompileError::Write {
        path: out.to_owned(),
        source,
    })?;
    for wasm_path in wasms {
        let wasm = std::fs::read(&wasm_path).map_err(|source| PrecompileError::Read {
            path: wasm_path.clone(),
            source,
        })?;
        let (name, bytes, sha256) =
            packaged_artifact(target, &wasm).map_err(|source| PrecompileError::Compile {
                path: wasm_path.clone(),
                source,
            })?;
        write(out.join(&name), &bytes)?;
        write(out.join(format!("{name}.sha256")), sha256.as_bytes())?;
        let file = wasm_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("{file} -> {name}");
    }
    Ok(())
}
