//! TLS for `https://` servers: rustls with the ring provider (no OpenSSL,
//! so the Raspberry Pi cross-build stays simple) and the webpki roots.

use std::sync::Arc;
use std::time::SystemTime;

/// The client configuration; certificates are always verified.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// When a connection failed because the certificate looks expired or not
/// yet valid, the box's clock is the usual culprit (a Pi has no RTC and
/// boots in the past until NTP answers): say so in plain words.
pub fn clock_hint(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(mut e) = current {
        // io::Error hides its payload from `source()`: look inside.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            e = inner;
        }
        if let Some(rustls::Error::InvalidCertificate(cert)) = e.downcast_ref::<rustls::Error>() {
            use rustls::CertificateError as C;
            let what = match cert {
                C::NotValidYet | C::NotValidYetContext { .. } => "is not valid yet",
                C::Expired | C::ExpiredContext { .. } => "has expired",
                _ => return None,
            };
            return Some(format!(
                "the central server's TLS certificate {what} according to this box's clock ({}); \
                 the clock is probably wrong (a Raspberry Pi has no battery-backed clock): \
                 check time synchronisation with `timedatectl`",
                crate::platform::clock::iso8601(SystemTime::now())
            ));
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_not_yet_valid_is_blamed_on_the_clock() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        let hint = clock_hint(&io);
        assert!(
            hint.as_deref().is_some_and(|h| h.starts_with(
                "the central server's TLS certificate is not valid yet according to this box's clock ("
            )),
            "{hint:?}"
        );
        let other = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(clock_hint(&other), None);
        assert!(client_config().is_ok());
    }
}
