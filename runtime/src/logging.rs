//! Where the agent's log goes: stderr always (under systemd journald
//! captures it, and adds its own timestamps, so ours are dropped), plus
//! `LOG_PATH` for `neopro-runtime run`, rotated by size like the upstream
//! agent (5 files of 10 MiB). `LOG_LEVEL` takes the upstream (winston)
//! level names too; `RUST_LOG` wins when set.

pub mod rotating;

use crate::config::SiteConfig;
use std::sync::Mutex;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Size at which `LOG_PATH` is rotated.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Files kept: `LOG_PATH` and `LOG_PATH.1` … `LOG_PATH.4`.
pub const FILES_KEPT: usize = 5;

/// The tracing filter for a `LOG_LEVEL` value. Upstream's npm levels map to
/// the nearest tracing level (`http`, `verbose` → debug; `silly` → trace);
/// our own crates get the level, dependencies stay at warn unless asked for
/// debug or more.
pub fn filter_directive(level: &str) -> String {
    let level = match level.trim().to_ascii_lowercase().as_str() {
        "error" => "error",
        "warn" | "warning" => "warn",
        "info" | "" => "info",
        "http" | "verbose" | "debug" => "debug",
        "silly" | "trace" => "trace",
        // Anything else is passed through as a full filter (e.g.
        // `neopro_runtime=debug,reqwest=info`).
        other => return other.to_owned(),
    };
    format!("warn,neopro_runtime={level}")
}

/// Whether stderr is the journal stream systemd names in `JOURNAL_STREAM`
/// (`<device>:<inode>`): then journald timestamps every line already.
pub fn stderr_is_journal(journal_stream: Option<&str>, stderr_dev_ino: Option<(u64, u64)>) -> bool {
    let (Some(value), Some((dev, ino))) = (journal_stream, stderr_dev_ino) else {
        return false;
    };
    let mut parts = value.trim().split(':').map(|p| p.parse::<u64>().ok());
    matches!((parts.next(), parts.next()), (Some(Some(d)), Some(Some(i))) if d == dev && i == ino)
}

fn stderr_dev_ino() -> Option<(u64, u64)> {
    let st = rustix::fs::fstat(std::io::stderr()).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// Installs the global subscriber. `to_file` adds `LOG_PATH` (the agent);
/// one-shot commands log to stderr only. A log file that cannot be opened
/// is reported on stderr and skipped, never fatal.
pub fn init(config: &SiteConfig, to_file: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter_directive(&config.log_level)))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,neopro_runtime=info"));
    let journal = stderr_is_journal(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_dev_ino(),
    );
    type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;
    let mut layers: Vec<Boxed> = Vec::new();
    // Colours only for a person at a terminal.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(!journal && rustix::termios::isatty(std::io::stderr()));
    layers.push(if journal {
        stderr.without_time().boxed()
    } else {
        stderr.boxed()
    });
    let mut file_problem = None;
    let mut set_aside = None;
    if to_file {
        match rotating::RotatingFile::open(&config.log_path, MAX_FILE_BYTES, FILES_KEPT) {
            Ok(mut file) => {
                set_aside = file.take_set_aside();
                layers.push(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(Mutex::new(file))
                        .boxed(),
                )
            }
            Err(e) => file_problem = Some(e),
        }
    }
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    if let Some(e) = file_problem {
        tracing::warn!(
            "not logging to {}: {e} (LOG_PATH; the log still goes to stderr / the journal)",
            config.log_path.display()
        );
    }
    if let Some(aside) = set_aside {
        tracing::warn!(
            "LOG_PATH {} was not the agent's log file: {aside}",
            config.log_path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_levels_map_to_tracing_filters() {
        assert_eq!(filter_directive("info"), "warn,neopro_runtime=info");
        assert_eq!(filter_directive("verbose"), "warn,neopro_runtime=debug");
        assert_eq!(filter_directive("SILLY"), "warn,neopro_runtime=trace");
        assert_eq!(
            filter_directive("neopro_runtime=debug"),
            "neopro_runtime=debug"
        );
        assert!(tracing_subscriber::EnvFilter::try_new(filter_directive("http")).is_ok());
    }

    #[test]
    fn the_journal_is_recognised_only_by_its_own_stream() {
        assert!(stderr_is_journal(Some("8:12345"), Some((8, 12345))));
        assert!(!stderr_is_journal(Some("8:12345"), Some((8, 999))));
        assert!(!stderr_is_journal(Some("garbage"), Some((8, 12345))));
        assert!(!stderr_is_journal(None, Some((8, 12345))));
    }
}
