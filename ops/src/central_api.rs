//! The central server's REST API as the operator commands use it
//! (protocol notes §8.1): login (with MFA), create a site, list sites,
//! regenerate a key, health. Errors carry the server's own message.

use serde_json::{Value, json};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(15);

/// What went wrong talking to the central server, in words for the person
/// at the box.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the central server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("login refused by the central server: {message}")]
    LoginRefused { message: String },
    #[error(
        "the central server asks for a multi-factor (MFA) code for this account: \
         run the command in a terminal, or pass --mfa-code (or ADMIN_MFA_CODE)"
    )]
    MfaRequired,
    #[error(
        "too many attempts, the central server answered: {message}; wait 15 minutes and try again"
    )]
    RateLimited { message: String },
    #[error("this account may not do that (HTTP {status}: {message}): use an admin account")]
    Forbidden { status: u16, message: String },
    #[error(
        "site {site_id} does not exist on the central server ({message}): \
         register this box with `neopro-runtime register`"
    )]
    SiteNotFound { site_id: String, message: String },
    #[error("the central server refused the site description: {message}")]
    Invalid { message: String },
    #[error("unexpected answer to {what}: HTTP {status}: {message}")]
    Unexpected {
        what: &'static str,
        status: u16,
        message: String,
    },
    #[error(
        "'{0}' is not a site id (letters, digits, '-' and '_' only): check SITE_ID in \
         site.conf or --site-id"
    )]
    BadSiteId(String),
    #[error("cannot set up HTTPS: {0}")]
    Tls(String),
}

/// A site id goes into a URL path: the server's ids are UUIDs, so anything
/// but letters, digits, `-` and `_` is a typo or an attempt to reach
/// another route (`../`, `?`, `#`).
fn is_valid_site_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The answer to a login.
#[derive(Debug, Clone, PartialEq)]
pub enum Login {
    Token(String),
    /// The account has MFA: log in again with the code.
    MfaRequired,
}

/// A site as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: String,
    pub site_name: String,
    pub club_name: String,
    /// Only present when the server just generated it.
    pub api_key: Option<String>,
}

impl Site {
    fn from_json(v: &Value) -> Option<Site> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Site {
            id: text("id")?,
            site_name: text("site_name").unwrap_or_default(),
            club_name: text("club_name").unwrap_or_default(),
            api_key: text("api_key"),
        })
    }
}

/// What the operator types to create a site (`POST /api/sites`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSite {
    pub site_name: String,
    pub club_name: String,
    pub city: String,
    pub region: String,
    pub country: String,
    pub sports: Vec<String>,
    pub hardware_model: String,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub status_code: u16,
    /// The JSON `status` field (healthy / degraded / unhealthy), if any.
    pub status: Option<String>,
}

/// A client for one central server.
pub struct CentralApi {
    base: String,
    http: reqwest::Client,
}

/// The server's message in an error body: `error`, else `message`, else the
/// text itself (shortened), else the HTTP reason.
fn server_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let mut message = ["error", "message"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .map(str::to_owned);
        if let (Some(m), Some(details)) = (&mut message, v.get("details").and_then(Value::as_array))
        {
            let parts: Vec<String> = details
                .iter()
                .map(|d| {
                    let field = d.get("field").and_then(Value::as_str).unwrap_or("?");
                    let text = d
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("invalid");
                    format!("{field}: {text}")
                })
                .collect();
            if !parts.is_empty() {
                m.push_str(&format!(" ({})", parts.join("; ")));
            }
        }
        if let Some(m) = message {
            return m;
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        text.chars().take(200).collect()
    }
}

impl CentralApi {
    /// `base` is `CENTRAL_SERVER_URL` (`http(s)://host[:port][/prefix]`).
    pub fn new(base: &str) -> Result<CentralApi, ApiError> {
        let tls = neopro_runtime::platform::tls::client_config()
            .map_err(|e| ApiError::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiError::Tls(e.to_string()))?;
        Ok(CentralApi {
            base: base.trim().trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ApiError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| {
            // The innermost cause is the useful part ("Connection refused",
            // "dns error: ..."); reqwest's outer layers repeat the URL.
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
            if e.is_timeout() {
                reason = format!("no answer within {} s", TIMEOUT.as_secs());
            }
            if let Some(hint) = neopro_runtime::platform::tls::clock_hint(&e) {
                reason = hint;
            }
            ApiError::Unreachable {
                url: url.clone(),
                reason,
            }
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        Ok((status, bytes.to_vec()))
    }

    fn common_error(what: &'static str, status: reqwest::StatusCode, body: &[u8]) -> ApiError {
        let message = server_message(status, body);
        match status.as_u16() {
            429 => ApiError::RateLimited { message },
            401 | 403 => ApiError::Forbidden {
                status: status.as_u16(),
                message,
            },
            code => ApiError::Unexpected {
                what,
                status: code,
                message,
            },
        }
    }

    /// `POST /api/auth/login`.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        mfa_code: Option<&str>,
    ) -> Result<Login, ApiError> {
        let mut body = json!({"email": email, "password": password});
        if let Some(code) = mfa_code {
            body["mfaCode"] = json!(code);
        }
        let (status, bytes) = self
            .call(reqwest::Method::POST, "/api/auth/login", None, Some(body))
            .await?;
        match status.as_u16() {
            200 | 201 => {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if v.get("requireMfa").and_then(Value::as_bool) == Some(true) {
                    return Ok(Login::MfaRequired);
                }
                match v.get("token").and_then(Value::as_str) {
                    Some(token) => Ok(Login::Token(token.to_owned())),
                    None => Err(ApiError::Unexpected {
                        what: "the login",
                        status: status.as_u16(),
                        message: "no token in the answer".to_owned(),
                    }),
                }
            }
            400 | 401 => Err(ApiError::LoginRefused {
                message: server_message(status, &bytes),
            }),
            _ => Err(Self::common_error("the login", status, &bytes)),
        }
    }

    /// `POST /api/sites`: the new site with its API key.
    pub async fn create_site(&self, token: &str, site: &NewSite) -> Result<Site, ApiError> {
        let body = json!({
            "site_name": site.site_name,
            "club_name": site.club_name,
            "location": {"city": site.city, "region": site.region, "country": site.country},
            "sports": site.sports,
            "hardware_model": site.hardware_model,
        });
        let (status, bytes) = self
            .call(reqwest::Method::POST, "/api/sites", Some(token), Some(body))
            .await?;
        match status.as_u16() {
            200 | 201 => site_with_key(
                "the site creation",
                status,
                &bytes,
                "no site id or API key in the answer",
            ),
            400 => Err(ApiError::Invalid {
                message: server_message(status, &bytes),
            }),
            _ => Err(Self::common_error("the site creation", status, &bytes)),
        }
    }

    /// `GET /api/sites`: the `data` array (upstream's resync script read a
    /// `sites` field that the server never sends).
    pub async fn list_sites(&self, token: &str) -> Result<Vec<Site>, ApiError> {
        let (status, bytes) = self
            .call(reqwest::Method::GET, "/api/sites", Some(token), None)
            .await?;
        if !status.is_success() {
            return Err(Self::common_error("the site list", status, &bytes));
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(v.get("data")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Site::from_json).collect())
            .unwrap_or_default())
    }

    /// `POST /api/sites/<id>/regenerate-key`: the site with its new key.
    pub async fn regenerate_key(&self, token: &str, site_id: &str) -> Result<Site, ApiError> {
        if !is_valid_site_id(site_id) {
            return Err(ApiError::BadSiteId(site_id.to_owned()));
        }
        let path = format!("/api/sites/{site_id}/regenerate-key");
        let (status, bytes) = self
            .call(reqwest::Method::POST, &path, Some(token), Some(json!({})))
            .await?;
        match status.as_u16() {
            200 | 201 => site_with_key(
                "the key regeneration",
                status,
                &bytes,
                "no API key in the answer",
            ),
            404 => Err(ApiError::SiteNotFound {
                site_id: site_id.to_owned(),
                message: server_message(status, &bytes),
            }),
            _ => Err(Self::common_error("the key regeneration", status, &bytes)),
        }
    }

    /// `GET /health` (upstream's diagnose probed `/api/health`, which does
    /// not exist).
    pub async fn health(&self) -> Result<Health, ApiError> {
        let (status, bytes) = self
            .call(reqwest::Method::GET, "/health", None, None)
            .await?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Health {
            status_code: status.as_u16(),
            status: v.get("status").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

/// Logs in, asking for the MFA code when the server wants one and
/// `mfa_code` was not given.
pub async fn login_with_mfa(
    api: &CentralApi,
    email: &str,
    password: &str,
    mfa_code: Option<&str>,
    prompter: &mut dyn super::prompt::Prompter,
) -> Result<String, super::OpsError> {
    match api.login(email, password, mfa_code).await? {
        Login::Token(token) => Ok(token),
        Login::MfaRequired => {
            let code = match mfa_code {
                // Given up front and still asked for: the server ignored it.
                Some(_) => return Err(ApiError::MfaRequired.into()),
                None if prompter.interactive() => {
                    prompter.ask_secret("MFA code (6 digits, from your authenticator app)")?
                }
                None => return Err(ApiError::MfaRequired.into()),
            };
            match api.login(email, password, Some(code.trim())).await? {
                Login::Token(token) => Ok(token),
                Login::MfaRequired => Err(ApiError::MfaRequired.into()),
            }
        }
    }
}

/// `abcd1234...wxyz (64 chars)`: enough to compare with the dashboard,
/// not enough to use.
pub fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return format!("{} chars, hidden", chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail} ({} chars)", chars.len())
}

/// A successful answer carrying a site with its API key; anything else in a
/// 2xx is `what` going wrong in a way the operator is told about.
fn site_with_key(
    what: &'static str,
    status: reqwest::StatusCode,
    bytes: &[u8],
    missing: &str,
) -> Result<Site, ApiError> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .as_ref()
        .and_then(Site::from_json)
        .filter(|s| s.api_key.is_some())
        .ok_or(ApiError::Unexpected {
            what,
            status: status.as_u16(),
            message: missing.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_and_server_messages_extracted() {
        assert_eq!(mask_key(&"ab12".repeat(16)), "ab12ab12...ab12 (64 chars)");
        assert_eq!(mask_key("short"), "5 chars, hidden");
        let body = br#"{"error":"Donn\u00e9es invalides","details":[{"field":"site_name","message":"requis"}]}"#;
        assert_eq!(
            server_message(reqwest::StatusCode::BAD_REQUEST, body),
            "Données invalides (site_name: requis)"
        );
        assert_eq!(
            server_message(reqwest::StatusCode::BAD_GATEWAY, b""),
            "Bad Gateway"
        );
    }

    #[tokio::test]
    async fn a_site_id_that_is_not_an_id_never_reaches_the_server() -> Result<(), ApiError> {
        // Port 9 (discard) on loopback: refused if it were ever called.
        let api = CentralApi::new("http://127.0.0.1:9")?;
        for id in ["../users", "a/b", "x?y=1", "a#b", "", "caf\u{e9}"] {
            let err = api.regenerate_key("token", id).await.map(|_| ());
            assert!(
                matches!(&err, Err(ApiError::BadSiteId(bad)) if bad == id),
                "{id}: {err:?}"
            );
        }
        let err = api.regenerate_key("token", "../users").await.map(|_| ());
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err(
                "'../users' is not a site id (letters, digits, '-' and '_' only): check SITE_ID \
                 in site.conf or --site-id"
                    .to_owned()
            )
        );
        assert!(is_valid_site_id("3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b"));
        Ok(())
    }
}
