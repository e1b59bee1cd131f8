use super::*;

const BOX_A: &str = "0123456789abcdef0123456789abcdef";
const BOX_B: &str = "fedcba9876543210fedcba9876543210";

use crate::store::tree::sorted_names as listing;

/// A state as box A's agent left it: a journal with a pending result,
/// a scheduled update, a committed agent release, the handover's record.
fn state_of_box_a(tmp: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let machine_id = tmp.join("machine-id");
    std::fs::write(&machine_id, format!("{BOX_A}\n"))?;
    let state = tmp.join("state");
    assert_eq!(check(&state, &machine_id)?, Binding::Recorded);
    std::fs::create_dir_all(state.join("journal"))?;
    std::fs::write(state.join("journal/cmd-1.json"), r#"{"result":"of box A"}"#)?;
    std::fs::create_dir_all(state.join("agent/1.4.0/bin"))?;
    std::fs::write(state.join("agent/state.json"), r#"{"committed":"1.4.0"}"#)?;
    std::fs::write(state.join("scheduled-updates.json"), "[]")?;
    std::fs::write(state.join("took-over.json"), "{}")?;
    Ok(state)
}

#[test]
fn the_same_machine_keeps_its_state() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let state = state_of_box_a(tmp.path())?;
    let before = listing(&state);
    assert_eq!(
        check(&state, &tmp.path().join("machine-id"))?,
        Binding::Same
    );
    assert_eq!(listing(&state), before);
    Ok(())
}

/// The SD card of box A cloned into box B (another /etc/machine-id): box
/// B's agent starts with nothing of A's, which is kept aside.
#[test]
fn a_cloned_card_sets_the_other_machines_state_aside() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let state = state_of_box_a(tmp.path())?;
    let box_b = tmp.path().join("machine-id-b");
    std::fs::write(&box_b, format!("{BOX_B}\n"))?;
    let Binding::SetAside { from, to, entries } = check(&state, &box_b)? else {
        panic!("a clone must be detected");
    };
    assert_eq!(from, BOX_A);
    assert_eq!(to, state.join(SET_ASIDE));
    assert_eq!(
        entries, 5,
        "journal, agent, schedule, took-over, machine-id"
    );
    assert_eq!(
        listing(&state),
        vec![SET_ASIDE.to_owned(), MACHINE_ID_FILE.to_owned()]
    );
    assert_eq!(
        std::fs::read_to_string(to.join("journal/cmd-1.json"))?,
        r#"{"result":"of box A"}"#
    );
    assert_eq!(
        std::fs::read_to_string(state.join(MACHINE_ID_FILE))?,
        format!("{BOX_B}\n")
    );
    // From now on the state is box B's.
    assert_eq!(check(&state, &box_b)?, Binding::Same);
    Ok(())
}

/// A clone of a clone: one set-aside copy, the latest, never a pile.
#[test]
fn a_second_clone_replaces_the_first_set_aside_copy() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let state = state_of_box_a(tmp.path())?;
    let box_b = tmp.path().join("machine-id-b");
    std::fs::write(&box_b, BOX_B)?;
    check(&state, &box_b)?;
    std::fs::write(state.join("journal-of-b"), "b")?;
    let Binding::SetAside { from, .. } = check(&state, &tmp.path().join("machine-id"))? else {
        panic!("a clone must be detected");
    };
    assert_eq!(from, BOX_B);
    assert_eq!(
        listing(&state.join(SET_ASIDE)),
        vec!["journal-of-b".to_owned(), MACHINE_ID_FILE.to_owned()]
    );
    Ok(())
}

#[test]
fn without_a_machine_id_nothing_changes() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let state = state_of_box_a(tmp.path())?;
    let before = listing(&state);
    for id in ["", "uninitialized\n", "not hex at all, but thirty-two!"] {
        let path = tmp.path().join("empty-id");
        std::fs::write(&path, id)?;
        assert_eq!(check(&state, &path)?, Binding::NoMachineId);
    }
    assert_eq!(
        check(&state, &tmp.path().join("missing"))?,
        Binding::NoMachineId
    );
    assert_eq!(listing(&state), before);
    Ok(())
}

/// An agent from before this check left state without a record: it is
/// this machine's (nothing tells otherwise), and recorded as such.
#[test]
fn state_without_a_record_is_adopted() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let state = tmp.path().join("state");
    std::fs::create_dir_all(state.join("journal"))?;
    let id = tmp.path().join("machine-id");
    std::fs::write(&id, BOX_A)?;
    assert_eq!(check(&state, &id)?, Binding::Recorded);
    assert_eq!(
        listing(&state),
        vec!["journal".to_owned(), MACHINE_ID_FILE.to_owned()]
    );
    Ok(())
}
