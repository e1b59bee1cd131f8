//! The contract the systemd unit relies on (`Type=notify`, `WatchdogSec`):
//! the real agent says READY=1, pings the watchdog at half the period, and
//! says STOPPING=1 on SIGTERM.
#![allow(clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_agent_notifies_ready_pings_the_watchdog_and_notifies_stopping() {
    let dir = tempfile::tempdir().expect("temp");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    std::fs::create_dir_all(dir.path().join("components")).expect("components");
    let conf = dir.path().join("site.conf");
    std::fs::write(
        &conf,
        format!(
            "CENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL=http://127.0.0.1:{port}\nSITE_ID=s\n\
             SITE_API_KEY=k\nNEOPRO_ROOT={root}/neopro\nSTATE_PATH={root}/state\n\
             COMPONENTS_PATH={root}/components\n",
            root = dir.path().display()
        ),
    )
    .expect("conf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_neopro-runtime"))
        .arg("--config")
        .arg(&conf)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        // 200 ms: a ping every 100 ms.
        .env("WATCHDOG_USEC", "200000")
        .env("LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let mut buf = [0u8; 256];
    let mut next = || -> String {
        let n = socket.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    let started = Instant::now();
    let mut pings = 0;
    while pings < 5 {
        assert_eq!(next(), "WATCHDOG=1");
        pings += 1;
    }
    // Five pings at 100 ms intervals (the first one immediately).
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut seen = next();
    while seen == "WATCHDOG=1" {
        seen = next();
    }
    assert_eq!(seen, "STOPPING=1");
    let status = child.wait().expect("agent exits");
    assert!(status.success(), "{status}");
}
