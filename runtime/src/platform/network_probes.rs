//! `network_diagnostics` (§2.14), run by the host: gateway, internet, DNS,
//! central server, interfaces, Wi-Fi, link stability. Every probe runs on
//! its own thread with its own bound, all in parallel, and the whole answer
//! is ready within [`TOTAL`] (upstream could exceed the server's 30 s).
//! Programs (`ping`, `iwgetid`) are run with argument vectors; the routing
//! table and Wi-Fi levels are read from /proc instead of shell pipelines.

use serde_json::{Value, json};
use std::io::Read;
use std::net::{Ipv4Addr, TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The whole diagnosis never takes longer than this.
pub const TOTAL: Duration = Duration::from_secs(25);

/// Where the probes go; the defaults are upstream's, tests point them at
/// 127.0.0.1.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub internet: String,
    pub dns_name: String,
    pub central_url: String,
}

impl Targets {
    pub fn new(central_url: &str) -> Self {
        Targets {
            internet: "8.8.8.8".to_owned(),
            dns_name: "google.com".to_owned(),
            central_url: central_url.to_owned(),
        }
    }
}

/// Runs a program for at most `timeout`; its stdout when it ran.
fn run_bounded(program: &str, args: &[&str], timeout: Duration) -> Option<(bool, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.take(64 << 10).read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    Some((status.success(), reader.join().unwrap_or_default()))
}

/// The number just before `marker` in `text` (`5 received` → 5).
fn number_before(text: &str, marker: &str) -> Option<f64> {
    let at = text.find(marker)?;
    text[..at].split_whitespace().last()?.parse().ok()
}

/// `ping -c <count>` facts: (sent, received, loss %, average ms).
fn ping(host: &str, count: u32, wait_secs: u32) -> (u32, u32, Option<f64>, Option<f64>) {
    let deadline = count * wait_secs + 2;
    let (c, w, d) = (
        count.to_string(),
        wait_secs.to_string(),
        deadline.to_string(),
    );
    let out = run_bounded(
        "ping",
        &["-n", "-c", &c, "-W", &w, "-w", &d, "--", host],
        Duration::from_secs(u64::from(deadline) + 1),
    );
    let Some((_, text)) = out else {
        return (count, 0, None, None);
    };
    let received = number_before(&text, " received").map_or(0, |n| n as u32);
    let loss = text
        .find("% packet loss")
        .and_then(|at| text[..at].split_whitespace().last()?.parse().ok());
    // rtt min/avg/max/mdev = 0.045/0.058/0.071/0.010 ms
    let avg = text
        .split("= ")
        .nth(1)
        .and_then(|rest| rest.split('/').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(f64::round);
    (count, received, loss, avg)
}

/// The default gateway from /proc/net/route.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"00000000") {
            return None;
        }
        let raw = u32::from_str_radix(fields.get(2)?, 16).ok()?;
        let b = raw.to_le_bytes();
        let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        (!ip.is_unspecified()).then_some(ip)
    })
}

/// (interface, quality percent, signal dBm) from /proc/net/wireless.
pub fn wireless_levels(text: &str) -> Option<(String, Option<i64>, Option<i64>)> {
    let line = text.lines().skip(2).find(|l| l.contains(':'))?;
    let (name, rest) = line.split_once(':')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Option<f64> { fields.get(i)?.trim_end_matches('.').parse().ok() };
    let quality = num(1).map(|q| (q * 100.0 / 70.0).round().min(100.0) as i64);
    let signal = num(2).map(|s| s as i64);
    Some((name.trim().to_owned(), quality, signal))
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn probe_gateway() -> Value {
    let Some(gw) = read("/proc/net/route").as_deref().and_then(default_gateway) else {
        return json!({"ip": null, "reachable": false, "latency_ms": null});
    };
    let started = Instant::now();
    let (_, received, _, _) = ping(&gw.to_string(), 1, 2);
    let reachable = received > 0;
    json!({
        "ip": gw.to_string(),
        "reachable": reachable,
        "latency_ms": reachable.then(|| started.elapsed().as_millis() as u64),
    })
}

fn probe_internet(host: &str) -> Value {
    let (sent, received, loss, avg) = ping(host, 5, 2);
    json!({
        "reachable": received > 0,
        "latency_ms": avg,
        "packet_loss_percent": loss,
        "packets_sent": sent,
        "packets_received": received,
    })
}

fn probe_dns(name: &str) -> Value {
    let started = Instant::now();
    let resolved = (name, 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()));
    match resolved {
        Some(addr) => json!({
            "working": true,
            "resolution_time_ms": started.elapsed().as_millis() as u64,
            "tested_domain": name,
            "resolved_ip": addr.ip().to_string(),
        }),
        None => {
            json!({"working": false, "resolution_time_ms": null, "tested_domain": name, "resolved_ip": null})
        }
    }
}

/// `GET <url>/health`: (status, seconds, TLS verified for https).
fn http_health(url: &str) -> (Option<u16>, Option<u64>, Option<bool>) {
    let health = format!("{}/health", url.trim_end_matches('/'));
    let https = url.starts_with("https://");
    let run = async {
        let tls = crate::platform::tls::client_config().ok()?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        let started = Instant::now();
        Some(match client.get(&health).send().await {
            Ok(response) => (
                Some(response.status().as_u16()),
                Some(started.elapsed().as_millis() as u64),
                https.then_some(true),
            ),
            Err(e) => {
                let text = format!("{e:?}").to_ascii_lowercase();
                let bad_cert = text.contains("certificate") || text.contains("invalidcert");
                (None, None, (https && bad_cert).then_some(false))
            }
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    rt.ok()
        .and_then(|rt| rt.block_on(run))
        .unwrap_or((None, None, None))
}

fn probe_central(url: &str) -> Value {
    let parsed = reqwest::Url::parse(url).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let https = url.starts_with("https://");
    let (tx, rx) = mpsc::channel();
    {
        let (tx, host) = (tx.clone(), host.clone());
        std::thread::spawn(move || {
            let (_, received, _, avg) = ping(&host, 1, 3);
            let _ = tx.send(("ping", json!(if received > 0 { avg } else { None })));
        });
    }
    if https {
        let (tx, host) = (tx.clone(), host.clone());
        std::thread::spawn(move || {
            let open = (host.as_str(), 443)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
            let _ = tx.send(("port", json!(open)));
        });
    }
    {
        let (tx, url) = (tx.clone(), url.to_owned());
        std::thread::spawn(move || {
            let (status, ms, ssl) = http_health(&url);
            let _ = tx.send(("http", json!([status, ms, ssl])));
        });
    }
    drop(tx);
    let mut out = json!({
        "reachable": false, "latency_ms": null, "http_latency_ms": null, "http_status": null,
        "url": url, "port_443_open": null, "ssl_valid": null,
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Ok((what, value)) =
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        match what {
            "ping" => out["latency_ms"] = value,
            "port" => out["port_443_open"] = value,
            _ => {
                let status = value[0].as_u64();
                out["http_status"] = value[0].clone();
                out["http_latency_ms"] = value[1].clone();
                out["ssl_valid"] = value[2].clone();
                out["reachable"] = json!(status.is_some_and(|s| (200..500).contains(&s)));
            }
        }
    }
    out
}

fn probe_interfaces() -> Value {
    let list: Vec<Value> = crate::platform::metrics::interfaces()
        .into_iter()
        .filter(|i| !i.name.starts_with("lo"))
        .map(|i| {
            let sys = |f: &str| {
                read(&format!("/sys/class/net/{}/{f}", i.name)).map(|s| s.trim().to_owned())
            };
            json!({
                "name": i.name,
                "ip4": i.ip4,
                "ip6": i.ip6,
                "mac": i.mac,
                "type": i.kind,
                "operstate": sys("operstate").unwrap_or_else(|| "unknown".to_owned()),
                "speed": sys("speed").and_then(|s| s.parse::<i64>().ok()).filter(|s| *s > 0),
            })
        })
        .collect();
    Value::Array(list)
}

fn probe_wifi() -> Value {
    let levels = read("/proc/net/wireless")
        .as_deref()
        .and_then(wireless_levels);
    let ssid = run_bounded("iwgetid", &["-r"], Duration::from_secs(3))
        .filter(|(ok, _)| *ok)
        .map(|(_, s)| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    match (levels, ssid) {
        (None, None) => Value::Null,
        (levels, ssid) => {
            let (quality, signal) = levels.map(|(_, q, s)| (q, s)).unwrap_or((None, None));
            json!({
                "connected": ssid.is_some(),
                "ssid": ssid,
                "quality_percent": quality,
                "signal_dbm": signal,
                "bitrate_mbps": null,
            })
        }
    }
}

fn probe_stability(interfaces: &Value) -> Value {
    let up = interfaces.as_array().and_then(|list| {
        list.iter()
            .find(|i| i["operstate"] == json!("up") && i["ip4"].is_string())
    });
    let Some(name) = up.and_then(|i| i["name"].as_str()) else {
        return json!({"interface_uptime_seconds": null, "reconnections_24h": null});
    };
    let changes = read(&format!("/sys/class/net/{name}/carrier_changes"))
        .and_then(|s| s.trim().parse::<u64>().ok());
    let uptime = read("/proc/uptime")
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|u| u.round() as u64);
    json!({"interface_uptime_seconds": uptime, "reconnections_24h": changes.map(|c| c / 2)})
}

/// Runs every probe and returns the diagnosis (without `success`).
pub fn run(targets: &Targets) -> Value {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<(&'static str, Value)>();
    let spawn = |name: &'static str, probe: Box<dyn FnOnce() -> Value + Send>| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((name, probe()));
        });
    };
    let t = targets.clone();
    spawn("gateway", Box::new(probe_gateway));
    spawn("internet", Box::new(move || probe_internet(&t.internet)));
    let t = targets.clone();
    spawn("dns", Box::new(move || probe_dns(&t.dns_name)));
    let t = targets.clone();
    spawn(
        "central_server",
        Box::new(move || probe_central(&t.central_url)),
    );
    spawn("wifi", Box::new(probe_wifi));
    drop(tx);
    let interfaces = probe_interfaces();
    let mut out = json!({
        "timestamp": crate::platform::clock::iso8601(std::time::SystemTime::now()),
        "internet": {"reachable": false, "latency_ms": null, "packet_loss_percent": null,
                     "packets_sent": 5, "packets_received": 0},
        "central_server": {"reachable": false, "latency_ms": null, "http_latency_ms": null,
                           "http_status": null, "url": targets.central_url,
                           "port_443_open": null, "ssl_valid": null},
        "dns": {"working": false, "resolution_time_ms": null, "tested_domain": null, "resolved_ip": null},
        "gateway": {"ip": null, "reachable": false, "latency_ms": null},
        "interfaces": interfaces,
        "wifi": null,
    });
    out["stability"] = probe_stability(&out["interfaces"]);
    let deadline = started + TOTAL;
    while let Ok((name, value)) =
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        out[name] = value;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_wifi_levels_are_read_from_proc() {
        let routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                      eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                      eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\n";
        assert_eq!(default_gateway(routes), Some(Ipv4Addr::new(192, 168, 1, 1)));
        let wireless = "Inter-| sta-|   Quality        |   Discarded packets\n \
                        face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n \
                        wlan0: 0000   56.  -54.  -256        0      0      0      0     12        0\n";
        assert_eq!(
            wireless_levels(wireless),
            Some(("wlan0".to_owned(), Some(80), Some(-54)))
        );
        assert_eq!(
            number_before(
                "5 packets transmitted, 4 received, 20% packet loss",
                " received"
            ),
            Some(4.0)
        );
    }
}
