//! Compiling a component in a short-lived child process: the agent binary
//! re-executed as `neopro-runtime precompile-component <artifact>`, reading
//! the wasm on stdin and writing the artifact (and its checksum) where the
//! cache expects it. The agent then only deserializes.
//!
//! Why: cranelift needs tens of MiB while it compiles, and the allocator
//! keeps most of it afterwards; on a box's first start (and after every
//! agent upgrade, the engine hash changes) each component is compiled once,
//! and the agent would carry that memory for its whole life. A child gives
//! it back to the system when it exits.

use super::SandboxError;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "precompile-component";

/// A compile that takes longer than this is abandoned (and done in process).
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `program precompile-component <artifact>` with `wasm` on stdin.
pub fn compile_in_child(program: &Path, wasm: &[u8], artifact: &Path) -> Result<(), String> {
    let mut child = Command::new(program)
        .arg(SUBCOMMAND)
        .arg(artifact)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let fed = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(wasm).map_err(|e| e.to_string()),
        None => Err("no stdin".to_owned()),
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the compiler process did not finish within {} s",
                    CHILD_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for the compiler process: {e}")),
        }
    };
    fed?;
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = (&mut err).take(4096).read_to_string(&mut stderr);
    }
    Err(format!(
        "the compiler process failed ({status}): {}",
        stderr.trim()
    ))
}

/// The child's side: compiles stdin's wasm with the agent's engine settings
/// and stores the artifact at `artifact` (with its `.sha256`).
pub fn run_child(artifact: &Path) -> Result<(), SandboxError> {
    use std::io::Read;
    let mut wasm = Vec::new();
    std::io::stdin()
        .take(super::MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut wasm)
        .map_err(|source| SandboxError::ReadComponent {
            path: "stdin".into(),
            source,
        })?;
    let engine = super::engine::new_engine(super::engine::CodeTarget::Host)?;
    let bytes = engine
        .precompile_component(&wasm)
        .map_err(|e| SandboxError::InvalidComponent {
            name: "the component".to_owned(),
            detail: format!("{e:?}"),
        })?;
    super::artifact_file::store_bytes(&bytes, artifact).map_err(SandboxError::Engine)
}
