//! The error every host call and every command returns.

/// A command or host-call failure; the message is shown to the operator.
pub use crate::bindings::neopro::agent::types::Error;

impl Error {
    /// The command data or an argument is malformed.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// The thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }

    /// The manifest does not grant what the command needs; name the grant.
    pub fn not_permitted(message: impl Into<String>) -> Self {
        Error::NotPermitted(message.into())
    }

    /// Bytes do not match the expected sha256.
    pub fn checksum_mismatch(message: impl Into<String>) -> Self {
        Error::ChecksumMismatch(message.into())
    }

    /// A size limit would be exceeded.
    pub fn too_large(message: impl Into<String>) -> Self {
        Error::TooLarge(message.into())
    }

    /// An operation ran past its time limit.
    pub fn timeout(message: impl Into<String>) -> Self {
        Error::Timeout(message.into())
    }

    /// The box refused an operation (disk, kernel).
    pub fn io(message: impl Into<String>) -> Self {
        Error::Io(message.into())
    }

    /// Anything else.
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed(message.into())
    }

    /// The operator-facing message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidInput(m)
            | Error::NotPermitted(m)
            | Error::NotFound(m)
            | Error::ChecksumMismatch(m)
            | Error::TooLarge(m)
            | Error::Timeout(m)
            | Error::Io(m)
            | Error::Failed(m) => m,
        }
    }

    /// True for `not-found`: lets callers treat "missing" as a normal case.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }
}
