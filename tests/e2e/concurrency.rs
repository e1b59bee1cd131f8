//! A backlog of commands runs at most MAX_CONCURRENT_COMMANDS at a time, in
//! arrival order, and every command is answered.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::{Site, components_dir};
use neopro_runtime::agent::dispatch::Dispatcher;
use neopro_runtime::journal::Outcome;
use serde_json::json;
use std::sync::Arc;

fn dispatcher(site: &Site, extra: &str) -> Arc<Dispatcher> {
    let text = format!(
        "NEOPRO_ROOT={}\nSTATE_PATH={}\nCOMPONENTS_PATH={}\nALLOWED_COMMANDS=test_escape\n{extra}\n",
        site.path("neopro").display(),
        site.path("state").display(),
        components_dir().display(),
    );
    let config = neopro_runtime::config::SiteConfig::from_sources(
        Some((&site.path("site.conf"), &text)),
        &|_| None,
    )
    .expect("site.conf");
    Arc::new(Dispatcher::new(&config, Arc::new(site.sandbox())))
}

async fn backlog(dispatcher: &Arc<Dispatcher>, count: usize) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move {
                // A few milliseconds of guest work each (printing).
                dispatcher
                    .run(
                        &format!("c-{i}"),
                        "test_escape",
                        &json!({"op": "print", "bytes": 64 << 10}),
                        None,
                    )
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(count);
    for task in tasks {
        outcomes.push(task.await.expect("command task"));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_queued_commands_all_run_never_more_than_the_cap_at_once() {
    let site = Site::new();
    let dispatcher = dispatcher(&site, "");
    let outcomes = backlog(&dispatcher, 500).await;
    assert_eq!(outcomes.len(), 500);
    for outcome in &outcomes {
        assert_eq!(
            outcome,
            &Outcome::Success {
                result: json!({"printed": 64 << 10})
            }
        );
    }
    let seen = dispatcher.concurrency();
    assert_eq!(seen.running, 0);
    assert_eq!(
        seen.peak, 4,
        "the default cap is 4 and a backlog reaches it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_is_set_in_site_conf() {
    let site = Site::new();
    let dispatcher = dispatcher(&site, "MAX_CONCURRENT_COMMANDS=2");
    let outcomes = backlog(&dispatcher, 50).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Success { .. }))
    );
    assert_eq!(dispatcher.concurrency().peak, 2);
}
