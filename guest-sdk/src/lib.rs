//! Write NEOPRO command components in a few lines.
//!
//! A command component is a WebAssembly component (built with
//! `cargo build --release --target wasm32-wasip2`) that handles one or more
//! command types sent by the NEOPRO central server. It runs sandboxed inside
//! `neopro-runtime` and reaches the box only through the host interfaces of
//! the `neopro:agent` WIT package, each call checked against the grants in the
//! component's manifest.
//!
//! This crate gives you:
//! - [`Command`]: parse the command's `data` into your own serde type and
//!   return any serializable result;
//! - [`Error`] with one constructor per WIT error kind (`Error::invalid_input`,
//!   `Error::not_permitted`, `Error::not_found`, `Error::checksum_mismatch`,
//!   `Error::too_large`, `Error::timeout`, `Error::io`, `Error::failed`); its
//!   message is what the operator reads;
//! - safe wrappers over the host: [`files`], [`config_store`], [`system`], [`logs`],
//!   [`progress`], and the logging macros [`info!`], [`warn!`], [`error!`],
//!   [`debug!`];
//! - [`export_command!`] to export your type as the component's handler.
//!
//! # A worked example
//!
//! A component that answers `get_version` with the installed NEOPRO version
//! and, when asked, the size of one video:
//!
//! ```no_run
//! use neopro_guest_sdk::serde::Deserialize;
//! use neopro_guest_sdk::serde_json::{json, Value};
//! use neopro_guest_sdk::{files, system, Command, Context, Error, Root};
//!
//! #[derive(Deserialize)]
//! #[serde(crate = "neopro_guest_sdk::serde")]
//! struct Data {
//!     video: Option<String>,
//! }
//!
//! struct GetVersion;
//!
//! impl Command for GetVersion {
//!     type Data = Data;
//!
//!     fn run(_ctx: &Context, data: Data) -> Result<Value, Error> {
//!         let version = system::version()?;
//!         neopro_guest_sdk::info!("version is {}", version.version);
//!         let size = match data.video {
//!             Some(path) => Some(files::stat(Root::Videos, &path)?.size),
//!             None => None,
//!         };
//!         Ok(json!({ "success": true, "version": version.version, "size": size }))
//!     }
//! }
//!
//! neopro_guest_sdk::export_command!(GetVersion);
//! # fn main() {}
//! ```
//!
//! Its manifest (`get-version.toml`, next to `get-version.wasm`) asks for
//! exactly what it uses:
//!
//! ```toml
//! name = "get-version"
//! version = "0.1.0"
//! commands = ["get_version"]
//! api-version = "0.2"    # the neopro:agent version this SDK builds against
//!
//! [grants]
//! system = true
//! files = { videos = "ro" }
//! ```
//!
//! Run it locally with
//! `neopro-runtime run-component get-version.wasm --data '{"video":"a.mp4"}'`.
//!
//! A panic inside `run` does not crash the agent: the command fails with the
//! panic message. Still, prefer returning an [`Error`]: its kind tells the
//! server what went wrong.

// The generated bindings contain the only `unsafe` of this crate (the
// canonical ABI glue written by wit-bindgen).
#[allow(unsafe_code, clippy::all, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "command",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_command_world",
        default_bindings_module: "neopro_guest_sdk::bindings",
    });
}

pub mod agent_update;
pub mod archive;
pub mod config_store;
pub mod download;
pub mod files;
pub mod local_app;
pub mod logs;
pub mod power;
pub mod progress;
pub mod services;
pub mod system;
pub mod time;

mod command;
mod error;
mod log;

pub use command::{Command, Context};
pub use error::Error;
pub use log::Level;

/// The named folders a path can be relative to; see the `types` WIT interface.
pub use bindings::neopro::agent::types::Root;

/// Re-exported so components need not depend on serde themselves; derive
/// with `#[serde(crate = "neopro_guest_sdk::serde")]`.
pub use serde;
/// Re-exported so components need not depend on serde_json themselves.
pub use serde_json;

#[doc(hidden)]
pub fn __log(level: Level, message: &str) {
    log::write(level, message);
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::exports::neopro::agent::handler::Guest;
    pub use crate::bindings::neopro::agent::types::Command as WireCommand;
    pub use crate::command::execute;
}

/// Exports a [`Command`] implementation as this component's handler.
///
/// Use it once per component, at the crate root: `export_command!(MyCommand);`
#[macro_export]
macro_rules! export_command {
    ($command:ty) => {
        struct __NeoproHandler;

        impl $crate::__private::Guest for __NeoproHandler {
            fn execute(
                command: $crate::__private::WireCommand,
            ) -> ::core::result::Result<::std::string::String, $crate::Error> {
                $crate::__private::execute::<$command>(command)
            }
        }

        $crate::bindings::__export_command_world!(__NeoproHandler with_types_in $crate::bindings);
    };
}
