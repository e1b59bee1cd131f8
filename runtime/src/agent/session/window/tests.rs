use super::*;
use serde_json::json;
use std::collections::HashMap;

const WINDOW: UpdateWindow = UpdateWindow {
    enabled: true,
    hour: 3,
};
const CLOSED: Option<u8> = Some(14);
const OPEN: Option<u8> = Some(3);

/// The facts, from a table.
struct Table {
    hour: Option<u8>,
    checks: bool,
    window_commands: Vec<String>,
    outcomes: HashMap<String, Outcome>,
    installed: Option<Value>,
}

impl Table {
    fn at(hour: Option<u8>) -> Self {
        Table {
            hour,
            checks: true,
            window_commands: vec!["install".to_owned()],
            outcomes: HashMap::new(),
            installed: None,
        }
    }
}

impl Facts for Table {
    fn hour(&self) -> Option<u8> {
        self.hour
    }
    fn checks_before_window(&self, command_type: &str) -> bool {
        self.checks && command_type == "install"
    }
    fn window_commands(&self) -> Vec<String> {
        self.window_commands.clone()
    }
    fn final_outcome(&self, id: &str) -> Option<Outcome> {
        self.outcomes.get(id).cloned()
    }
    fn already_installed(&self, _data: &Value) -> Option<Value> {
        self.installed.clone()
    }
}

/// A window outside its hour, for commands no component checks.
fn unchecked_outside_the_window()
-> Result<(tempfile::TempDir, Table, Window), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut facts = Table::at(CLOSED);
    facts.checks = false;
    let window = Window::new(dir.path(), WINDOW);
    Ok((dir, facts, window))
}

fn command(id: &str, deployment: &str) -> Command {
    Command {
        id: id.to_owned(),
        command_type: "install".to_owned(),
        data: json!({"version": "2.0.0", "updateUrl": "http://x/r.tar.gz", "deploymentId": deployment}),
    }
}

/// The effects in short: what, for which id.
fn short(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::RecordAndSend { id, .. } => format!("record {id}"),
            Effect::Send { id, .. } => format!("send {id}"),
            Effect::FinalProgress(p) => format!("final {}", p.event),
            Effect::Start(c) => format!("start {}", c.id),
            Effect::Check(c) => format!("check {}", c.id),
            Effect::Scheduled {
                update,
                command_type,
            } => format!("scheduled {} {command_type}", update.id),
            Effect::Journal(_) => "journal".to_owned(),
        })
        .collect()
}

fn error_of(effect: &Effect) -> Option<&str> {
    match effect {
        Effect::RecordAndSend {
            outcome: Outcome::Error { error },
            ..
        } => Some(error),
        _ => None,
    }
}

#[test]
fn a_command_is_kept_once_its_component_passed_it_and_copies_wait_for_the_check()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let facts = Table::at(CLOSED);
    let mut window = Window::new(dir.path(), WINDOW);
    assert_eq!(
        short(&window.arrive(command("u-1", "d-1"), &facts)),
        ["check u-1"]
    );
    assert!(!window.holds("u-1"), "nothing kept before the answer");
    // The server's copy, and another deployment, during the check: later.
    assert!(window.arrive(command("u-2", "d-1"), &facts).is_empty());
    assert!(window.arrive(command("u-3", "d-3"), &facts).is_empty());
    // Passed: kept ("scheduled" progress); the copy joins it; the other
    // deployment is checked in turn.
    let answer = Some(Outcome::Success {
        result: json!({"checked": true}),
    });
    assert_eq!(
        short(&window.checked(command("u-1", "d-1"), answer, &facts)),
        ["scheduled u-1 install", "check u-3"]
    );
    assert!(window.holds("u-1"));
    // Refused: the component's message is the result, nothing kept.
    let refusal = Some(Outcome::Error {
        error: "version '../x' must be 1-64 letters".to_owned(),
    });
    let effects = window.checked(command("u-3", "d-3"), refusal, &facts);
    assert_eq!(short(&effects), ["record u-3"]);
    assert_eq!(
        error_of(&effects[0]),
        Some("version '../x' must be 1-64 letters")
    );
    assert!(!window.holds("u-3"));
    // Its result journaled after it ran in the window: the copy gets it.
    let mut open = Table::at(OPEN);
    assert_eq!(short(&window.due(&open)), ["start u-1"]);
    let done = Outcome::Success {
        result: json!({"version": "2.0.0"}),
    };
    assert_eq!(short(&window.finished("u-1", &done)), ["record u-2"]);
    assert!(!window.holds("u-1"));
    // A later copy of the same deployment gets the result of the run.
    open.outcomes.insert("u-1".to_owned(), done);
    assert_eq!(
        short(&window.arrive(command("u-4", "d-1"), &open)),
        ["record u-4"]
    );
    Ok(())
}

#[test]
fn without_a_declared_check_a_command_is_kept_at_once_and_told_again()
-> Result<(), Box<dyn std::error::Error>> {
    let (_dir, facts, mut window) = unchecked_outside_the_window()?;
    assert_eq!(
        short(&window.arrive(command("u-1", "d-1"), &facts)),
        ["scheduled u-1 install"]
    );
    // The same id again, and a new authentication: "scheduled" again.
    let again = window.redelivered("u-1", &facts).ok_or("u-1 is kept")?;
    assert_eq!(short(&again), ["scheduled u-1 install"]);
    assert_eq!(short(&window.waiting(&facts)), ["scheduled u-1 install"]);
    assert!(window.redelivered("u-9", &facts).is_none());
    Ok(())
}

#[test]
fn an_open_window_runs_now_and_the_agent_s_own_release_answers_success()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut window = Window::new(dir.path(), WINDOW);
    let mut facts = Table::at(OPEN);
    assert_eq!(
        short(&window.arrive(command("u-1", "d-1"), &facts)),
        ["start u-1"]
    );
    facts.installed = Some(json!({"message": "already installed"}));
    let effects = window.arrive(command("u-2", "d-2"), &facts);
    assert!(
        matches!(&effects[..], [Effect::RecordAndSend { id, outcome: Outcome::Success { result } }]
            if id == "u-2" && result["message"] == "already installed"),
        "{effects:?}"
    );
    Ok(())
}

#[test]
fn an_entry_without_its_type_is_refused_with_its_copies_when_the_type_is_not_one()
-> Result<(), Box<dyn std::error::Error>> {
    let (_dir, mut facts, mut window) = unchecked_outside_the_window()?;
    // As an older agent wrote it: no command type.
    let old = command("u-9", "d-9");
    window.queue.keep(&old.id, "", &old.data);
    assert!(window.arrive(command("u-10", "d-9"), &facts).is_empty());
    facts.hour = OPEN;
    facts.window_commands = vec!["a".to_owned(), "b".to_owned()];
    let effects = window.due(&facts);
    assert_eq!(short(&effects), ["record u-9", "record u-10"]);
    let expected = "scheduled command u-9 names no command type, and the components list 2 maintenance-window commands (a, b); it cannot be run";
    assert_eq!(error_of(&effects[0]), Some(expected));
    assert_eq!(error_of(&effects[1]), Some(expected));
    assert!(!window.holds("u-9"));
    Ok(())
}

#[test]
fn a_kept_entry_whose_result_is_journaled_is_settled_with_its_copies()
-> Result<(), Box<dyn std::error::Error>> {
    let (dir, mut facts, mut window) = unchecked_outside_the_window()?;
    window.arrive(command("u-1", "d-1"), &facts);
    window.arrive(command("u-2", "d-1"), &facts);
    assert!(window.settle(&facts).is_empty(), "no result yet");
    // A restart after the resume at start rolled it back.
    facts.outcomes.insert(
        "u-1".to_owned(),
        Outcome::Error {
            error: "rolled back".to_owned(),
        },
    );
    let mut again = Window::new(dir.path(), WINDOW);
    assert_eq!(short(&again.settle(&facts)), ["send u-1", "record u-2"]);
    assert!(!again.holds("u-1"));
    Ok(())
}
