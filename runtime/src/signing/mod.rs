//! ed25519 signatures the agent checks before it trusts bytes from the
//! network: pushed components ([`components`]) and software releases
//! ([`releases`]).

pub mod components;
pub mod releases;
