//! Questions to the operator: on the terminal (the password without echo),
//! or scripted answers in tests. Questions go to stderr so stdout keeps only
//! results.

use std::collections::VecDeque;
use std::io::{BufRead, Write};

/// Why a question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read the answer from the terminal: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer given (input closed)")]
    Closed,
}

/// Asks the operator.
pub trait Prompter {
    /// False when nobody can answer (no terminal, `--non-interactive`).
    fn interactive(&self) -> bool;
    /// Asks `question`; an empty answer takes `default`.
    fn ask(&mut self, question: &str, default: Option<&str>) -> Result<String, PromptError>;
    /// Asks without echoing what is typed (passwords, MFA codes).
    fn ask_secret(&mut self, question: &str) -> Result<String, PromptError>;
}

/// The process's terminal: stdin for answers, stderr for questions.
pub struct Terminal {
    interactive: bool,
}

impl Terminal {
    /// Interactive only when stdin is a terminal and the operator did not
    /// ask for `--non-interactive`.
    pub fn new(non_interactive: bool) -> Terminal {
        Terminal {
            interactive: !non_interactive && rustix::termios::isatty(std::io::stdin()),
        }
    }
}

fn read_line() -> Result<String, PromptError> {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(PromptError::Closed);
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Restores the terminal's echo when dropped, even on an early return.
struct EchoOff {
    saved: Option<rustix::termios::Termios>,
}

impl EchoOff {
    fn new() -> EchoOff {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok();
        if let Some(saved) = &saved {
            let mut quiet = saved.clone();
            quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
            let _ =
                rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
        }
        EchoOff { saved }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

impl Prompter for Terminal {
    fn interactive(&self) -> bool {
        self.interactive
    }

    fn ask(&mut self, question: &str, default: Option<&str>) -> Result<String, PromptError> {
        let mut err = std::io::stderr();
        match default {
            Some(d) => write!(err, "{question} [{d}]: ")?,
            None => write!(err, "{question}: ")?,
        }
        err.flush()?;
        let answer = read_line()?.trim().to_owned();
        Ok(match default {
            Some(d) if answer.is_empty() => d.to_owned(),
            _ => answer,
        })
    }

    fn ask_secret(&mut self, question: &str) -> Result<String, PromptError> {
        let mut err = std::io::stderr();
        write!(err, "{question}: ")?;
        err.flush()?;
        let answer = {
            let _echo_off = EchoOff::new();
            read_line()
        };
        writeln!(err)?;
        answer
    }
}

/// Pre-recorded answers, for tests; records every question asked.
#[derive(Debug, Default)]
pub struct Scripted {
    answers: VecDeque<String>,
    /// The questions asked so far, secret ones prefixed with `secret: `.
    pub asked: Vec<String>,
}

impl Scripted {
    pub fn new(answers: &[&str]) -> Scripted {
        Scripted {
            answers: answers.iter().map(|a| (*a).to_owned()).collect(),
            asked: Vec::new(),
        }
    }
}

impl Prompter for Scripted {
    fn interactive(&self) -> bool {
        true
    }

    fn ask(&mut self, question: &str, default: Option<&str>) -> Result<String, PromptError> {
        self.asked.push(question.to_owned());
        let answer = self.answers.pop_front().ok_or(PromptError::Closed)?;
        Ok(match default {
            Some(d) if answer.is_empty() => d.to_owned(),
            _ => answer,
        })
    }

    fn ask_secret(&mut self, question: &str) -> Result<String, PromptError> {
        self.asked.push(format!("secret: {question}"));
        self.answers.pop_front().ok_or(PromptError::Closed)
    }
}

/// Nobody to ask: every question fails (fully non-interactive runs).
pub struct Nobody;

impl Prompter for Nobody {
    fn interactive(&self) -> bool {
        false
    }
    fn ask(&mut self, _: &str, _: Option<&str>) -> Result<String, PromptError> {
        Err(PromptError::Closed)
    }
    fn ask_secret(&mut self, _: &str) -> Result<String, PromptError> {
        Err(PromptError::Closed)
    }
}
