//! Which HTTP redirects a download may follow.
//!
//! Why: a component's grant names the hosts it may download from, but an
//! HTTP client follows redirects on its own. Unchecked, a granted host (or
//! anyone who can answer for it) could send the download to any other host,
//! the club's LAN included, or from https down to plain http where the bytes
//! can be changed on the way. So every hop is checked like the first URL:
//! its host against `grants.download.hosts`, never from https to http, at
//! most [`MAX_HOPS`].

use crate::manifest::DownloadGrant;
use reqwest::Url;

/// Most redirects one request follows (reqwest's own default).
pub const MAX_HOPS: usize = 10;

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("more than {MAX_HOPS} redirects")]
    TooMany,
    #[error("a redirect from {from} to {to} leaves https for plain http")]
    Downgrade { from: String, to: String },
    #[error("a redirect to {0} is not an http or https URL")]
    Scheme(String),
    #[error(
        "a redirect to {url} leaves the hosts the component may download from ('{host}' is not in grants.download.hosts)"
    )]
    Host { host: String, url: String },
}

/// Checks one hop: `next` after the URLs already requested (`previous`,
/// the first one included). `grant` is `None` for the agent's own downloads
/// (any host, but still no downgrade).
pub fn check_hop(
    previous: &[Url],
    next: &Url,
    grant: Option<&DownloadGrant>,
) -> Result<(), RedirectError> {
    if previous.len() > MAX_HOPS {
        return Err(RedirectError::TooMany);
    }
    let to = next.as_str().to_owned();
    match next.scheme() {
        "https" => {}
        "http" => {
            if let Some(from) = previous.iter().find(|u| u.scheme() == "https") {
                return Err(RedirectError::Downgrade {
                    from: from.as_str().to_owned(),
                    to,
                });
            }
        }
        _ => return Err(RedirectError::Scheme(to)),
    }
    if let Some(grant) = grant {
        let host = next.host_str().unwrap_or_default();
        if host.is_empty() || !grant.allows_host(host) {
            return Err(RedirectError::Host {
                host: host.to_owned(),
                url: to,
            });
        }
    }
    Ok(())
}

/// The client's redirect policy: [`check_hop`] on every hop.
pub fn policy(grant: Option<DownloadGrant>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match check_hop(attempt.previous(), attempt.url(), grant.as_ref()) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    })
}

/// The [`RedirectError`] behind a failed request, if that is why it failed.
pub fn refused(e: &reqwest::Error) -> Option<RedirectError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<RedirectError>() {
            return Some(found.clone());
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn url(s: &str) -> Result<Url, Box<dyn std::error::Error>> {
        Ok(Url::parse(s)?)
    }

    fn grant(hosts: &[&str]) -> DownloadGrant {
        DownloadGrant {
            max_bytes: 1,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn https_to_http_is_refused_even_for_the_agent() -> TestResult {
        let first = url("https://cdn.example/a.mp4")?;
        let next = url("http://cdn.example/a.mp4")?;
        assert_eq!(
            check_hop(std::slice::from_ref(&first), &next, None),
            Err(RedirectError::Downgrade {
                from: "https://cdn.example/a.mp4".to_owned(),
                to: "http://cdn.example/a.mp4".to_owned()
            })
        );
        assert_eq!(
            check_hop(&[first], &url("https://other.example/a")?, None),
            Ok(())
        );
        Ok(())
    }

    #[test]
    fn every_hop_is_checked_against_the_grant() -> TestResult {
        let g = grant(&["*.example"]);
        let first = url("https://cdn.example/a")?;
        assert_eq!(
            check_hop(
                std::slice::from_ref(&first),
                &url("https://mirror.example/a")?,
                Some(&g)
            ),
            Ok(())
        );
        assert_eq!(
            check_hop(
                std::slice::from_ref(&first),
                &url("https://192.168.1.1/admin")?,
                Some(&g)
            ),
            Err(RedirectError::Host {
                host: "192.168.1.1".to_owned(),
                url: "https://192.168.1.1/admin".to_owned()
            })
        );
        assert!(matches!(
            check_hop(
                std::slice::from_ref(&first),
                &url("file:///etc/neopro/site.conf")?,
                Some(&g)
            ),
            Err(RedirectError::Scheme(_))
        ));
        let many = vec![first; MAX_HOPS + 1];
        assert_eq!(
            check_hop(&many, &url("https://cdn.example/b")?, Some(&g)),
            Err(RedirectError::TooMany)
        );
        Ok(())
    }
}
