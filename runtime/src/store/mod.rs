//! Bytes on disk: atomic writes, hashing, folder trees, the safe tar.gz
//! extractor and the web app's configuration.json. Low level on purpose:
//! nothing here depends on the sandbox, the link or the site configuration.

pub mod atomic;
pub mod chunk_writer;
pub mod deadline;
pub mod extract;
pub mod hash;
pub mod machine_binding;
pub mod private_dir;
pub mod safe_folder;
pub mod temp_sweep;
pub mod tree;
pub mod untrusted_file;
pub mod webapp_config;
