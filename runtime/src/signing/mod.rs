//! ed25519 signatures the agent checks before it trusts bytes from the
//! network: pushed components ([`components`]) and software releases
//! ([`releases`]: a signature the update command carries; [`manifest`]: a
//! signed manifest the release archive carries, written by [`embed`]).

pub mod components;
pub mod embed;
pub mod manifest;
pub mod releases;
