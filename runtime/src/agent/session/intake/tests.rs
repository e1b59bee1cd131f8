use super::*;
use crate::agent::maintenance_window::UpdateWindow;
use crate::journal::Journal;
use serde_json::json;

/// The manifests, from a table: `install` waits for the window, `look`
/// is read-only.
struct Table;

impl Kinds for Table {
    fn uses_maintenance_window(&self, command_type: &str) -> bool {
        command_type == "install"
    }
    fn is_read_only(&self, command_type: &str) -> bool {
        command_type == "look"
    }
}

/// The window's facts: outside the window, kept without a check.
struct Closed;

impl Facts for Closed {
    fn hour(&self) -> Option<u8> {
        Some(14)
    }
    fn checks_before_window(&self, _: &str) -> bool {
        false
    }
    fn window_commands(&self) -> Vec<String> {
        vec!["install".to_owned()]
    }
    fn final_outcome(&self, _: &str) -> Option<Outcome> {
        None
    }
    fn already_installed(&self, _: &Value) -> Option<Value> {
        None
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    journal: Journal,
    window: Window,
}

fn fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(&dir.path().join("journal"))?;
    let window = Window::new(
        dir.path(),
        UpdateWindow {
            enabled: true,
            hour: 3,
        },
    );
    Ok(Fixture {
        _dir: dir,
        journal,
        window,
    })
}

/// Runs the one journal job `effects` holds, as the session's queue does.
fn run_job(effects: Vec<Effect>, journal: &Journal) -> Result<Step, String> {
    match <[Effect; 1]>::try_from(effects) {
        Ok([Effect::Journal(job)]) => Ok(job(journal)),
        Ok(other) => Err(format!("not a journal job: {other:?}")),
        Err(effects) => Err(format!("not one effect: {effects:?}")),
    }
}

/// A state-changing command received: its admission job run, then what
/// the intake decides on what the journal said.
fn receive(f: &mut Fixture, message: &Value) -> Result<Vec<Effect>, String> {
    match run_job(
        command(message.clone(), &Table, &f.window, &Closed),
        &f.journal,
    )? {
        Step::Admitted {
            command: sent,
            admission,
            final_progress,
        } => Ok(admitted(
            sent,
            admission,
            final_progress,
            &Table,
            &mut f.window,
            &Closed,
        )),
        other => Err(format!("not admitted: {other:?}")),
    }
}

#[test]
fn a_read_only_command_runs_unjournaled_and_a_known_result_is_sent_again()
-> Result<(), Box<dyn std::error::Error>> {
    let f = fixture()?;
    let message = json!({"id": "c-1", "type": "look", "data": {"n": 1}});
    let step = run_job(
        command(message.clone(), &Table, &f.window, &Closed),
        &f.journal,
    )?;
    let Step::Looked {
        command: sent,
        known: None,
        final_progress,
    } = step
    else {
        return Err(format!("{step:?}").into());
    };
    assert!(
        f.journal.get("c-1").is_none(),
        "no journal entry before it runs"
    );
    let effects = looked(sent, None, final_progress);
    assert!(
        matches!(&effects[..], [Effect::Start(c)] if c.id == "c-1" && c.data == json!({"n": 1})),
        "{effects:?}"
    );
    // It ran and its result is journaled: a copy gets that result.
    f.journal.admit("c-1", "look")?;
    let done = Outcome::Success {
        result: json!({"n": 1}),
    };
    f.journal.complete("c-1", done.clone())?;
    let Step::Looked {
        command: sent,
        known,
        ..
    } = run_job(command(message, &Table, &f.window, &Closed), &f.journal)?
    else {
        return Err("not looked up".into());
    };
    assert_eq!(known, Some(done.clone()));
    let effects = looked(sent, known, None);
    assert!(
        matches!(&effects[..], [Effect::Send { id, outcome }] if id == "c-1" && *outcome == done),
        "{effects:?}"
    );
    Ok(())
}

#[test]
fn an_admitted_command_runs_once_and_a_done_one_follows_its_closing_event()
-> Result<(), Box<dyn std::error::Error>> {
    let mut f = fixture()?;
    let message = json!({"id": "c-2", "type": "change", "data": {}});
    let effects = receive(&mut f, &message)?;
    assert!(f.journal.get("c-2").is_some(), "journaled before it runs");
    assert!(
        matches!(&effects[..], [Effect::Start(c)] if c.id == "c-2"),
        "{effects:?}"
    );
    // Done, with a deployment's closing event on disk: the event, then the
    // result.
    let closing = FinalProgress {
        event: "install_progress".to_owned(),
        payload: json!({"deploymentId": "d-1", "status": "completed"}),
        sent_in: None,
    };
    f.journal.set_final_progress("c-2", closing)?;
    f.journal
        .complete("c-2", Outcome::Success { result: json!({}) })?;
    let effects = receive(&mut f, &message)?;
    assert_eq!(
        format!("{effects:?}"),
        r#"[FinalProgress(install_progress), Send(c-2, Success { result: Object {} })]"#
    );
    Ok(())
}

#[test]
fn a_window_command_goes_to_the_window_and_a_kept_one_is_not_admitted_again()
-> Result<(), Box<dyn std::error::Error>> {
    let mut f = fixture()?;
    let message = json!({"id": "u-1", "type": "install",
        "data": {"version": "2.0.0", "updateUrl": "http://x/r.tar.gz", "deploymentId": "d-1"}});
    let effects = receive(&mut f, &message)?;
    assert_eq!(format!("{effects:?}"), "[Scheduled(u-1, install)]");
    // Delivered again: its "scheduled" progress, no journal work.
    let again = command(message, &Table, &f.window, &Closed);
    assert_eq!(format!("{again:?}"), "[Scheduled(u-1, install)]");
    Ok(())
}

#[test]
fn an_oversized_or_undecodable_command_is_refused_once_under_its_id()
-> Result<(), Box<dyn std::error::Error>> {
    let f = fixture()?;
    let skimmed = || crate::link::oversized::Skimmed {
        event: "command".to_owned(),
        id: Some("big-1".to_owned()),
        command_type: Some("deploy".to_owned()),
    };
    let expected = Outcome::Error {
        error: "Command too large: its message is 9000 bytes, more than the 4096 bytes this box accepts (the server's maxPayload plus a margin); it was not run".to_owned(),
    };
    for _ in 0..2 {
        let step = run_job(oversized(9000, 4096, Some(skimmed())), &f.journal)?;
        let Step::Send { id, outcome } = step else {
            return Err(format!("{step:?}").into());
        };
        assert_eq!((id.as_str(), outcome.as_ref()), ("big-1", Some(&expected)));
    }
    assert_eq!(f.journal.outcome("big-1"), Some(expected));
    // Not a command, or no id: dropped.
    assert!(oversized(9000, 4096, None).is_empty());
    let Step::Send { outcome, .. } = run_job(
        undecodable(
            Some("command".into()),
            Some("bad-1".into()),
            "{",
            "lone surrogate",
        ),
        &f.journal,
    )?
    else {
        return Err("not refused".into());
    };
    let Some(Outcome::Error { error }) = outcome else {
        return Err("no error".into());
    };
    assert!(
        error.starts_with(
            "the agent could not decode this command, so it did not run it: lone surrogate"
        ),
        "{error}"
    );
    assert!(undecodable(Some("heartbeat_ack".into()), None, "{", "bad").is_empty());
    assert!(command(json!({"type": "look"}), &Table, &f.window, &Closed).is_empty());
    Ok(())
}
