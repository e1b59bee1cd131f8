//! The PASS/FAIL list: one line per check with its time, written to the
//! terminal as it goes and to `report.txt` in the log folder.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

struct Line {
    passed: bool,
    name: String,
    secs: f64,
    detail: String,
}

pub struct Report {
    started: Instant,
    lines: Mutex<Vec<Line>>,
    file: Mutex<Option<std::fs::File>>,
}

impl Report {
    pub fn new(path: &Path) -> Report {
        Report {
            started: Instant::now(),
            lines: Mutex::new(Vec::new()),
            file: Mutex::new(std::fs::File::create(path).ok()),
        }
    }

    fn print(&self, text: &str) {
        println!("{text}");
        if let Ok(mut file) = self.file.lock()
            && let Some(f) = file.as_mut()
        {
            let _ = writeln!(f, "{text}");
        }
    }

    /// A heading (scenario group).
    pub fn section(&self, title: &str) {
        self.print(&format!(
            "\n== {title}   (at {:.1} s)",
            self.started.elapsed().as_secs_f64()
        ));
    }

    /// Runs one check: `Ok(detail)` is a PASS, an error a FAIL.
    pub async fn check<F>(&self, name: &str, check: F) -> bool
    where
        F: Future<Output = anyhow::Result<String>>,
    {
        let started = Instant::now();
        let outcome = check.await;
        let secs = started.elapsed().as_secs_f64();
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(e) => (false, format!("{e:#}")),
        };
        self.print(&format!(
            "{} {secs:6.1}s  {name}{}",
            if passed { "PASS" } else { "FAIL" },
            if detail.is_empty() {
                String::new()
            } else {
                format!(
                    "\n                {}",
                    detail.replace('\n', "\n                ")
                )
            }
        ));
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(Line {
                passed,
                name: name.to_owned(),
                secs,
                detail,
            });
        }
        passed
    }

    /// Prints the summary; true when every check passed.
    pub fn finish(&self) -> bool {
        let lines = self.lines.lock().map(|l| {
            l.iter()
                .map(|x| (x.passed, x.name.clone(), x.secs, x.detail.clone()))
                .collect::<Vec<_>>()
        });
        let lines = lines.unwrap_or_default();
        let failed: Vec<_> = lines.iter().filter(|l| !l.0).collect();
        self.print(&format!(
            "\n{} checks, {} passed, {} failed, {:.0} s",
            lines.len(),
            lines.len() - failed.len(),
            failed.len(),
            self.started.elapsed().as_secs_f64()
        ));
        for (_, name, secs, detail) in &failed {
            let first = detail.lines().next().unwrap_or_default();
            self.print(&format!("  FAIL {name} ({secs:.1} s): {first}"));
        }
        failed.is_empty()
    }
}
