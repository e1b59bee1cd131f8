use super::*;
use std::fs;

fn fake_proc(dir: &Path, stat: &str) -> std::io::Result<()> {
    fs::create_dir_all(dir.join("proc"))?;
    fs::create_dir_all(dir.join("sys/class/thermal/thermal_zone0"))?;
    fs::write(dir.join("proc/stat"), stat)?;
    fs::write(
        dir.join("proc/meminfo"),
        "MemTotal:        1000000 kB\nMemFree:           50000 kB\nMemAvailable:     750000 kB\n",
    )?;
    fs::write(dir.join("proc/uptime"), "86400.73 12345.00\n")?;
    fs::write(dir.join("sys/class/thermal/thermal_zone0/temp"), "51234\n")?;
    Ok(())
}

#[test]
fn metrics_come_from_proc_and_sys() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    fake_proc(dir.path(), "cpu  100 0 100 800 0 0 0 0 0 0\n")?;
    let probe = SystemProbe::new(
        &dir.path().join("proc"),
        &dir.path().join("sys"),
        dir.path(),
    );
    let m = probe.metrics();
    assert_eq!(m.cpu, 20.0, "since boot: 200 busy of 1000");
    // MemAvailable, not MemFree: 25 % used, not 95 %.
    assert_eq!(m.memory, 25.0);
    assert_eq!(m.temperature, 51.2);
    assert_eq!(m.uptime, 86400);
    assert!(m.disk > 0.0 && m.disk <= 100.0);

    // The next sample covers only what happened since the first.
    fs::write(
        dir.path().join("proc/stat"),
        "cpu  150 0 150 900 0 0 0 0 0 0\n",
    )?;
    assert_eq!(probe.metrics().cpu, 50.0);
    Ok(())
}

#[test]
fn missing_sources_read_as_zero() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let probe = SystemProbe::new(
        &dir.path().join("none"),
        &dir.path().join("none"),
        dir.path(),
    );
    let m = probe.metrics();
    assert_eq!(
        (m.cpu, m.memory, m.temperature, m.uptime),
        (0.0, 0.0, 0.0, 0)
    );
    Ok(())
}

#[test]
fn version_sources_in_upstream_order() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    assert_eq!(version_info(root).version, "unknown");
    fs::create_dir_all(root.join("webapp"))?;
    fs::write(root.join("webapp/package.json"), r#"{"version":"1.0.0"}"#)?;
    assert_eq!(version_info(root).source, "webapp/package.json");
    fs::write(root.join("VERSION"), "2.0.0\n")?;
    assert_eq!(version_info(root).version, "2.0.0");
    fs::write(
        root.join("webapp/version.json"),
        r#"{"version":"2.1.0","commit":"abc"}"#,
    )?;
    let v = version_info(root);
    assert_eq!(
        (v.version.as_str(), v.commit.as_deref()),
        ("2.1.0", Some("abc"))
    );
    fs::write(
        root.join("release.json"),
        r#"{"version":"2.1.3","buildDate":"2025-12-01T10:00:00.000Z","source":"central-dashboard"}"#,
    )?;
    let v = version_info(root);
    assert_eq!(v.version, "2.1.3");
    assert_eq!(v.source, "central-dashboard");
    assert_eq!(v.build_date.as_deref(), Some("2025-12-01T10:00:00.000Z"));
    fs::write(root.join("release.json"), "not json")?;
    assert_eq!(version_info(root).version, "2.1.0");
    Ok(())
}

#[test]
fn version_files_that_are_links_or_fifos_are_skipped_without_blocking()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_owned();
    fs::create_dir_all(root.join("webapp"))?;
    fs::write(root.join("webapp/package.json"), r#"{"version":"1.0.0"}"#)?;
    // A FIFO where release.json goes, /dev/zero where VERSION goes, a link
    // to a secret where version.json goes.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("release.json"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )?;
    std::os::unix::fs::symlink("/dev/zero", root.join("VERSION"))?;
    fs::write(root.join("secret.json"), r#"{"version":"SITE_API_KEY"}"#)?;
    std::os::unix::fs::symlink(root.join("secret.json"), root.join("webapp/version.json"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(version_info(&root));
    });
    let v = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .map_err(|_| "version_info blocked")?;
    assert_eq!(
        (v.version.as_str(), v.source.as_str()),
        ("1.0.0", "webapp/package.json")
    );
    Ok(())
}

#[test]
fn primary_ip_prefers_wired_then_wifi() {
    let iface = |name: &str, ip: Option<&str>| Interface {
        name: name.to_owned(),
        ip4: ip.map(str::to_owned),
        ip6: None,
        mac: None,
        kind: kind_of(name),
    };
    let list = vec![
        iface("lo", Some("127.0.0.1")),
        iface("wlan0", Some("192.168.4.1")),
        iface("eth0", Some("10.0.0.5")),
    ];
    assert_eq!(primary_ipv4(&list).as_deref(), Some("10.0.0.5"));
    assert_eq!(primary_ipv4(&list[..2]).as_deref(), Some("192.168.4.1"));
    assert_eq!(primary_ipv4(&list[..1]), None);
}

#[test]
fn own_memory_is_read_from_proc_status() {
    let status = "Name:\tneopro-runtime\nVmRSS:\t   11676 kB\nRssAnon:\t    2100 kB\nRssFile:\t    9576 kB\n";
    assert_eq!(own_memory_kib(status), Some((11676, 2100)));
    assert_eq!(own_memory_kib("Name: x\n"), None);
}
