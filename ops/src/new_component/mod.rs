//! `neopro-runtime component new NAME [--dir DIR] [--lang rust|ts]`: writes
//! a command component project that builds anywhere, with no checkout of
//! this repository: the guest SDK and the WIT it is built against are
//! vendored into the project from this binary, so the component links
//! against exactly the API of the agent that made it.

mod rust;
mod typescript;
mod vendored;

use std::path::{Path, PathBuf};

/// The language of the new component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate (`cargo build --release --target wasm32-wasip2`).
    Rust,
    /// A TypeScript package (`npm ci && npm run build`, QuickJS engine).
    Ts,
}

/// Why no project was written. Nothing is left behind in any case.
#[derive(Debug, thiserror::Error)]
pub enum NewComponentError {
    #[error(
        "component name '{0}' must be 1-64 characters of a-z, 0-9 and '-', starting with a letter (it becomes the manifest name; the command type is the same with '_')"
    )]
    BadName(String),
    #[error("{0} already exists: choose another name or --dir (nothing was overwritten)")]
    Exists(PathBuf),
    #[error("cannot write the project in {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the TypeScript template's lockfile (guest-sdk/template-ts/package-lock.json, built in) is not what component new expects: {0}"
    )]
    Lockfile(String),
}

/// What was written, for the message printed to the author.
#[derive(Debug)]
pub struct Created {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// The commands that build, test and run it, one per line.
    pub next_steps: Vec<String>,
}

/// The names a component name implies.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// `video-stats`: manifest name and folder.
    pub component: String,
    /// `video_stats`: the command type and the Rust library (and so the
    /// built `.wasm`) name.
    pub snake: String,
}

impl Names {
    fn new(name: &str) -> Result<Self, NewComponentError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && !name.contains("--")
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(NewComponentError::BadName(name.to_owned()));
        }
        Ok(Names {
            component: name.to_owned(),
            snake: name.replace('-', "_"),
        })
    }

    /// Fills `{{component}}`, `{{snake}}` and `{{agent_version}}`.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("{{component}}", &self.component)
            .replace("{{snake}}", &self.snake)
            .replace("{{agent_version}}", env!("CARGO_PKG_VERSION"))
    }
}

/// One file of the project: a path relative to its folder and the bytes.
pub(crate) type ProjectFile = (PathBuf, String);

/// Writes the project `DIR/NAME/`. The folder is built under a temporary
/// name and renamed at the end, so a failure leaves nothing half-written.
pub fn create(name: &str, parent: &Path, lang: Lang) -> Result<Created, NewComponentError> {
    let names = Names::new(name)?;
    let dir = parent.join(&names.component);
    if dir.exists() {
        return Err(NewComponentError::Exists(dir));
    }
    let (files, next_steps) = match lang {
        Lang::Rust => (rust::files(&names), rust::next_steps(&names)),
        Lang::Ts => (typescript::files(&names)?, typescript::next_steps(&names)),
    };
    let staging = parent.join(format!(".{}.new-component", names.component));
    let result = write_all(&staging, &files).and_then(|()| {
        std::fs::rename(&staging, &dir).map_err(|source| NewComponentError::Write {
            path: dir.clone(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result?;
    Ok(Created {
        dir,
        files: files.into_iter().map(|(p, _)| p).collect(),
        next_steps,
    })
}

fn write_all(root: &Path, files: &[ProjectFile]) -> Result<(), NewComponentError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| NewComponentError::Write { path, source }
    };
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(io(root))?;
    }
    for (relative, text) in files {
        let path = root.join(relative);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(io(folder))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
