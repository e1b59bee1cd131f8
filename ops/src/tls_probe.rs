//! The TLS part of `diagnose`: one handshake with the agent's own settings
//! (rustls, webpki roots), keeping the server's certificate even when it is
//! refused, so a refusal can be explained — above all the Raspberry Pi
//! whose clock (no battery) is before the certificate's start.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one handshake showed.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsOutcome {
    /// None when the handshake succeeded.
    pub error: Option<String>,
    /// TLS version agreed (on success).
    pub version: Option<String>,
    /// The server certificate's notBefore / notAfter (Unix seconds), when
    /// one was received and could be read.
    pub validity: Option<(i64, i64)>,
}

/// Wraps the normal verifier to remember the end-entity certificate.
#[derive(Debug)]
struct Capturing {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Capturing {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.to_vec());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The clock rustls checks certificates against (the box's, or a test's).
#[derive(Debug)]
pub struct FixedOrSystemTime(pub Option<SystemTime>);

impl rustls::time_provider::TimeProvider for FixedOrSystemTime {
    fn current_time(&self) -> Option<UnixTime> {
        let now = self.0.unwrap_or_else(SystemTime::now);
        Some(UnixTime::since_unix_epoch(
            now.duration_since(UNIX_EPOCH).ok()?,
        ))
    }
}

/// Handshakes with `addr` as `host`, trusting `roots` at time `now`
/// (None = the system clock).
pub fn probe(
    addr: SocketAddr,
    host: &str,
    roots: rustls::RootCertStore,
    now: Option<SystemTime>,
    timeout: Duration,
) -> TlsOutcome {
    let failed = |error: String| TlsOutcome {
        error: Some(error),
        version: None,
        validity: None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = match rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    {
        Ok(v) => v,
        Err(e) => return failed(format!("cannot set up certificate checks: {e}")),
    };
    let verifier = Arc::new(Capturing {
        inner,
        seen: Mutex::new(None),
    });
    let config = match rustls::ClientConfig::builder_with_details(
        provider,
        Arc::new(FixedOrSystemTime(now)),
    )
    .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth(),
        Err(e) => return failed(format!("cannot set up TLS: {e}")),
    };
    let name = match ServerName::try_from(host.to_owned()) {
        Ok(n) => n,
        Err(e) => return failed(format!("'{host}' is not a valid server name: {e}")),
    };
    let result = (|| -> Result<String, std::io::Error> {
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
        let mut sock = TcpStream::connect_timeout(&addr, timeout)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(conn
            .protocol_version()
            .map(|v| format!("{v:?}").replace("TLSv1_", "TLS 1."))
            .unwrap_or_else(|| "TLS".to_owned()))
    })();
    let validity = verifier
        .seen
        .lock()
        .ok()
        .and_then(|s| s.as_deref().and_then(validity));
    match result {
        Ok(version) => TlsOutcome {
            error: None,
            version: Some(version),
            validity,
        },
        Err(e) => TlsOutcome {
            error: Some(match e.get_ref() {
                Some(inner) => inner.to_string(),
                None => e.to_string(),
            }),
            version: None,
            validity,
        },
    }
}

/// What the local clock says about a certificate valid from `not_before`
/// to `not_after`: None when `now` is inside.
pub fn clock_verdict(now: i64, not_before: i64, not_after: i64) -> Option<String> {
    let at = |s: i64| date(s);
    if now < not_before {
        Some(format!(
            "this box's clock ({}) is before the start of the server's certificate ({}): \
             the clock is wrong (a Raspberry Pi has no battery-backed clock and starts in \
             the past until it reaches a time server)",
            at(now),
            at(not_before)
        ))
    } else if now > not_after {
        Some(format!(
            "the server's certificate expired on {} according to this box's clock ({})",
            at(not_after),
            at(now)
        ))
    } else {
        None
    }
}

/// `2026-11-28 09:51:12 UTC`.
pub fn date(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    let iso = neopro_runtime::platform::clock::iso8601(t);
    format!("{} {} UTC", &iso[..10], &iso[11..19])
}

/// Reads one DER TLV at `input`: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        // `get`: the bytes come from the server and need not be ASCII.
        0x17 if text.len() == 12 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        0x18 if text.len() == 14 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day, h, m, s) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// notBefore / notAfter of an X.509 certificate (DER), in Unix seconds.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    // Optional [0] version, then serial, signature algorithm, issuer.
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (_, validity, _) = tlv(rest)?;
    let (t1, v1, rest) = tlv(validity)?;
    let (t2, v2, _) = tlv(rest)?;
    Some((der_time(t1, v1)?, der_time(t2, v2)?))
}

/// A TLS server on 127.0.0.1 with a test certificate for `localhost`
/// (signed by a test CA), for the TLS checks' tests.
#[cfg(test)]
pub(crate) mod test_server {
    use super::*;

    pub const CA: &[u8] = include_bytes!("testdata/ca.der");
    pub const LEAF: &[u8] = include_bytes!("testdata/leaf.der");
    const LEAF_KEY: &[u8] = include_bytes!("testdata/leaf.key.der");
    /// The test leaf certificate: valid 2026-11-28 09:51:12 to 2036-11-25 09:51:12 UTC.
    pub const NOT_BEFORE: i64 = 1_795_859_472;

    /// Serves handshakes until the test process ends.
    pub fn start() -> Result<SocketAddr, Box<dyn std::error::Error>> {
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(LEAF.to_vec())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(LEAF_KEY.to_vec().into()),
            )?,
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for mut sock in listener.incoming().flatten() {
                let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                while conn.is_handshaking() {
                    if conn.complete_io(&mut sock).is_err() {
                        break;
                    }
                }
                let _ = conn.complete_io(&mut sock);
            }
        });
        Ok(addr)
    }

    pub fn roots() -> Result<rustls::RootCertStore, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(CA.to_vec()))?;
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{LEAF, NOT_BEFORE, roots};
    use super::*;

    #[test]
    fn validity_is_read_from_the_certificate() {
        assert_eq!(validity(LEAF), Some((NOT_BEFORE, 2_111_219_472)));
        assert_eq!(date(NOT_BEFORE), "2026-11-28 09:51:12 UTC");
        assert_eq!(validity(&LEAF[..40]), None);
        // Non-ASCII where the digits belong: no time, no panic.
        assert_eq!(der_time(0x17, "1\u{e9}123456789Z".as_bytes()), None);
        assert_eq!(der_time(0x18, "123\u{e9}123456789Z".as_bytes()), None);
        assert_eq!(der_time(0x17, b"261128095112Z"), Some(NOT_BEFORE));
        assert_eq!(
            clock_verdict(NOT_BEFORE + 10, NOT_BEFORE, NOT_BEFORE + 100),
            None
        );
    }

    #[test]
    fn a_good_certificate_passes() -> Result<(), Box<dyn std::error::Error>> {
        let addr = super::test_server::start()?;
        let now = UNIX_EPOCH + Duration::from_secs(NOT_BEFORE as u64 + 86_400);
        let outcome = probe(
            addr,
            "localhost",
            roots()?,
            Some(now),
            Duration::from_secs(5),
        );
        assert_eq!(outcome.error, None);
        assert_eq!(outcome.version.as_deref(), Some("TLS 1.3"));
        assert_eq!(outcome.validity, Some((NOT_BEFORE, 2_111_219_472)));
        Ok(())
    }

    #[test]
    fn a_clock_in_the_past_is_named_as_the_cause() -> Result<(), Box<dyn std::error::Error>> {
        let addr = super::test_server::start()?;
        // A Pi booted without network: 2022-01-01.
        let now = UNIX_EPOCH + Duration::from_secs(1_640_995_200);
        let outcome = probe(
            addr,
            "localhost",
            roots()?,
            Some(now),
            Duration::from_secs(5),
        );
        let error = outcome.error.ok_or("the handshake should fail")?;
        assert!(error.contains("not valid yet"), "{error}");
        let (nb, na) = outcome.validity.ok_or("certificate kept")?;
        assert_eq!(
            clock_verdict(1_640_995_200, nb, na).as_deref(),
            Some(
                "this box's clock (2022-01-01 00:00:00 UTC) is before the start of the server's \
                 certificate (2026-11-28 09:51:12 UTC): the clock is wrong (a Raspberry Pi has no \
                 battery-backed clock and starts in the past until it reaches a time server)"
            )
        );
        Ok(())
    }
}
