//! Logging to the agent's log, through the `log` host interface.

/// Severity of a log line.
pub use crate::bindings::neopro::agent::log::Level;

/// Writes one line to the agent's log. Prefer the macros.
pub fn write(level: Level, message: &str) {
    crate::bindings::neopro::agent::log::write(level, message);
}

/// Logs at info level: `info!("deployed {}", name)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::__log($crate::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::__log($crate::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::__log($crate::Level::Error, &::std::format!($($arg)*)) };
}

/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::__log($crate::Level::Debug, &::std::format!($($arg)*)) };
}
