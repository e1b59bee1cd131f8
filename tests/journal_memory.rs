//! The command journal keeps ids and delivery state in memory, never the
//! outcomes: measured with a counting allocator (this test binary only).
// A global allocator is unsafe by definition; this one only counts.
#![allow(unsafe_code)]

use neopro_runtime::journal::{Admission, Journal, Outcome};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: same layout, same contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Both tests read process-wide counters: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_thousand_large_results_cost_the_journal_little_memory()
-> Result<(), Box<dyn std::error::Error>> {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(dir.path())?;
    let before = LIVE.load(Ordering::SeqCst);
    // 1,000 results of 64 KiB (a get_logs answer can be 4 MiB): 64 MiB if
    // they stayed in memory.
    let log = "l".repeat(64 << 10);
    for i in 0..1000 {
        let id = format!("c-{i}");
        assert_eq!(journal.admit(&id, "get_logs")?, Admission::Run);
        journal.complete(
            &id,
            Outcome::Success {
                result: json!({"success": true, "logs": log}),
            },
        )?;
        if i % 2 == 0 {
            journal.mark_delivered(&id)?;
        }
    }
    let grown = LIVE.load(Ordering::SeqCst) - before;
    assert!(
        grown < 1 << 20,
        "the journal holds {grown} bytes for 1,000 results"
    );
    // The outcomes are still there, read from disk when needed.
    assert_eq!(journal.undelivered_ids().len(), 500);
    assert!(matches!(
        journal.admit("c-999", "get_logs")?,
        Admission::Done(Outcome::Success { .. })
    ));
    let (entries, bytes) = journal.usage();
    assert_eq!(entries, 1000);
    assert!(bytes > 64_000_000 && bytes <= neopro_runtime::journal::MAX_BYTES);
    Ok(())
}

#[test]
fn a_state_changing_command_costs_three_fsyncs_and_a_read_only_one_none()
-> Result<(), Box<dyn std::error::Error>> {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(dir.path())?;
    let fsyncs = neopro_runtime::store::atomic::fsync_count;
    let outcome = || Outcome::Success {
        result: json!({"success": true}),
    };
    // State-changing: admitted (one flush) before it runs, its outcome
    // written atomically and flushed (the file, then its folder) before the
    // result is sent, the batch's delivery marks flushed once: what a power
    // cut must not lose (docs/power-cuts.md).
    let before = fsyncs();
    let ids: Vec<String> = (0..20).map(|i| format!("w-{i}")).collect();
    for id in &ids {
        assert_eq!(journal.admit(id, "update_config")?, Admission::Run);
        journal.complete(id, outcome())?;
    }
    journal.mark_all_delivered(&ids)?;
    let state_changing = fsyncs() - before;
    // Read-only: never admitted; its result is kept for re-sending in the
    // runtime folder, then forgotten once delivered.
    let before = fsyncs();
    let ids: Vec<String> = (0..20).map(|i| format!("r-{i}")).collect();
    for id in &ids {
        journal.complete(id, outcome())?;
    }
    journal.mark_all_delivered(&ids)?;
    let read_only = fsyncs() - before;
    assert_eq!(
        (state_changing, read_only),
        (20 * 3 + 1, 0),
        "fsyncs for 20 state-changing and 20 read-only commands"
    );
    Ok(())
}

/// Every file under `dir` with its size and modification time.
fn files_under(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut found = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(meta) = entry.metadata() {
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.insert(
                entry.file_name().to_string_lossy().into_owned(),
                (meta.len(), modified),
            );
        }
    }
    found
}

#[test]
fn a_read_only_command_writes_nothing_to_the_card_and_survives_an_agent_restart()
-> Result<(), Box<dyn std::error::Error>> {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let card = tempfile::tempdir()?;
    let run = tempfile::tempdir()?;
    let journal_dir = card.path().join("journal");
    let runtime_dir = run.path().join("journal");
    let logs = Outcome::Success {
        result: json!({"success": true, "logs": "l".repeat(4096)}),
    };
    let card_before = {
        let journal = Journal::open(&journal_dir)?.keep_read_only_in(&runtime_dir);
        let card_before = files_under(&journal_dir);
        journal.complete("r-1", logs.clone())?;
        journal.complete("r-2", logs.clone())?;
        journal.mark_delivered("r-2")?;
        assert_eq!(
            files_under(&journal_dir),
            card_before,
            "nothing on the card"
        );
        assert_eq!(
            files_under(&runtime_dir).keys().collect::<Vec<_>>(),
            ["r-1.json"],
            "the undelivered one kept in the runtime folder, the delivered one forgotten"
        );
        card_before
    };
    // The agent restarts (the unit keeps its runtime folder): the
    // undelivered result is sent again, the delivered one is not.
    let journal = Journal::open(&journal_dir)?.keep_read_only_in(&runtime_dir);
    assert_eq!(
        journal.undelivered(),
        vec![("r-1".to_owned(), logs.clone())]
    );
    // A re-delivered copy gets the same answer.
    assert_eq!(journal.get("r-1").and_then(|e| e.outcome), Some(logs));
    journal.mark_delivered("r-1")?;
    assert!(files_under(&runtime_dir).is_empty());
    // A restart of the start-up compacts the logs; still no outcome file.
    assert!(
        files_under(&journal_dir)
            .keys()
            .all(|n| card_before.contains_key(n)),
        "no read-only outcome on the card: {:?}",
        files_under(&journal_dir)
    );
    // A reboot (the runtime folder emptied): nothing to send, nothing
    // reported interrupted — it was never admitted.
    drop(journal);
    std::fs::remove_dir_all(&runtime_dir)?;
    let journal = Journal::open(&journal_dir)?.keep_read_only_in(&runtime_dir);
    assert!(journal.undelivered().is_empty());
    Ok(())
}
