//! The outbox: results as they go out to the central server.

pub(super) mod fit;
pub(super) mod refused;
