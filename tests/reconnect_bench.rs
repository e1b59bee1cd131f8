//! `cargo run -p neopro-e2e --bin reconnect-bench -- [agents] [outage-seconds…]`
//! (default: 200 agents, outages of 5 and 120 s).
//!
//! N links with the production backoff (each authenticating as its own
//! site on every connect, as the agent does) against one local test
//! central; the central stops, stays down for the outage, and restarts on
//! the same port. Printed per outage: the largest share of the fleet that
//! re-authenticated within any 1-second window, and the times after the
//! restart by which 50 / 90 / 100 % were back. Targets (issue 18.9): at most
//! 20 % in any second, t90 ≤ 15 s. Outside CI: it takes over two minutes.
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_runtime::link::{self, LinkConfig, LinkEvent};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// When each agent was last answered `authenticated`.
type Answers = Arc<Mutex<Vec<Option<Instant>>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let agents: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let mut outages: Vec<u64> = args.filter_map(|a| a.parse().ok()).collect();
    if outages.is_empty() {
        outages = vec![5, 120];
    }
    let keys: Vec<(String, String)> = (0..agents)
        .map(|i| (format!("site-{i}"), format!("key-{i}")))
        .collect();
    let sites: Vec<(&str, &str)> = keys.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect();
    let mut central = Central::start(&sites).await;
    let answers: Answers = Arc::new(Mutex::new(vec![None; agents]));
    let mut handles = Vec::new();
    for (i, (site, key)) in keys.iter().enumerate() {
        let (handle, mut events) = link::spawn(LinkConfig::new(&central.url()));
        let (site, key, answers) = (site.clone(), key.clone(), answers.clone());
        let emitter = handle.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    LinkEvent::Connected => {
                        let _ =
                            emitter.emit("authenticate", &[json!({"siteId": site, "apiKey": key})]);
                    }
                    LinkEvent::Event { name, .. } if name == "authenticated" => {
                        answers.lock().expect("lock")[i] = Some(Instant::now());
                    }
                    _ => {}
                }
            }
        });
        handles.push(handle);
    }
    wait_all_since(&answers, None, Duration::from_secs(60)).await;
    println!(
        "{agents} agents authenticated; production backoff (full jitter, 5 s window doubling to 15 s)"
    );
    for outage in outages {
        let port = central.stop().await;
        tokio::time::sleep(Duration::from_secs(outage)).await;
        // The server's return: agents may connect while start_on finishes.
        let back = Instant::now();
        central = Central::start_on(port, &sites).await;
        let times = wait_all_since(&answers, Some(back), Duration::from_secs(120)).await;
        report(outage, agents, &times);
    }
    for handle in handles {
        handle.close().await;
    }
}

/// Waits until every agent was answered after `since`; returns the seconds
/// after `since`, sorted.
async fn wait_all_since(answers: &Answers, since: Option<Instant>, limit: Duration) -> Vec<f64> {
    let deadline = Instant::now() + limit;
    loop {
        let times: Vec<f64> = answers
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|t| match (t, since) {
                (Some(t), Some(s)) if *t >= s => Some((*t - s).as_secs_f64()),
                (Some(_), None) => Some(0.0),
                _ => None,
            })
            .collect();
        let total = answers.lock().expect("lock").len();
        if times.len() == total || Instant::now() >= deadline {
            let mut times = times;
            times.sort_by(f64::total_cmp);
            if times.len() < total {
                println!("  only {} of {total} back within {limit:?}", times.len());
            }
            return times;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(outage: u64, agents: usize, times: &[f64]) {
    let mut peak = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] > 1.0 {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    let at = |share: f64| {
        let n = ((times.len() as f64 * share).ceil() as usize).clamp(1, times.len().max(1));
        times.get(n - 1).copied().unwrap_or(f64::NAN)
    };
    println!(
        "central down {outage:>3} s: largest share re-authenticated in any 1 s: {:.1} % ({peak} of {agents}); t50 {:.1} s, t90 {:.1} s, t100 {:.1} s",
        100.0 * peak as f64 / agents as f64,
        at(0.5),
        at(0.9),
        at(1.0)
    );
}
