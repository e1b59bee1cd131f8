//! The central server's REST routes used by `register`, `resync` and
//! `diagnose` (protocol notes §8.1), and the analytics route the agent's
//! forwarder posts video plays to, with the upstream answers and
//! messages. Sites created here can authenticate on the test central's
//! Socket.IO side (they share the site table).
#![allow(clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An account that can log in.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub password: String,
    pub role: String,
    /// The code the account's MFA expects, if it has MFA.
    pub mfa_code: Option<String>,
}

#[derive(Default)]
struct ApiState {
    accounts: Mutex<Vec<Account>>,
    tokens: Mutex<HashMap<String, String>>,
    names: Mutex<HashMap<String, (String, String)>>,
    requests: Mutex<Vec<(String, Value)>>,
    counter: std::sync::atomic::AtomicU64,
    /// The `videos` table: ids a play's `video_id` may reference.
    videos: Mutex<std::collections::HashSet<String>>,
    /// The `video_plays` table: rows inserted.
    plays: Mutex<Vec<Value>>,
    /// Answer 500 to this many video-plays requests first.
    fail_plays: Mutex<usize>,
}

/// Handle on the REST side of a test central.
#[derive(Clone)]
pub struct Api {
    state: Arc<ApiState>,
    sites: Arc<Mutex<HashMap<String, String>>>,
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl Api {
    pub fn new(sites: Arc<Mutex<HashMap<String, String>>>) -> Api {
        Api {
            state: Arc::new(ApiState::default()),
            sites,
        }
    }

    /// Adds an account (`role` admin / operator / viewer).
    pub fn add_account(&self, email: &str, password: &str, role: &str, mfa_code: Option<&str>) {
        self.state.accounts.lock().expect("lock").push(Account {
            email: email.to_owned(),
            password: password.to_owned(),
            role: role.to_owned(),
            mfa_code: mfa_code.map(str::to_owned),
        });
    }

    /// The site's current key (plain; the real server keeps a bcrypt hash).
    pub fn key_of(&self, site_id: &str) -> Option<String> {
        self.sites.lock().expect("lock").get(site_id).cloned()
    }

    /// Every request body received on `path` (e.g. `/api/sites`).
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.state
            .requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Adds a video the `video_plays.video_id` foreign key accepts.
    pub fn add_video(&self, id: &str) {
        self.state
            .videos
            .lock()
            .expect("lock")
            .insert(id.to_owned());
    }

    /// The plays recorded (rows of `video_plays`), in arrival order.
    pub fn recorded_plays(&self) -> Vec<Value> {
        self.state.plays.lock().expect("lock").clone()
    }

    /// Makes the next `n` video-plays requests fail with upstream's 500.
    pub fn fail_video_plays(&self, n: usize) {
        *self.state.fail_plays.lock().expect("lock") = n;
    }

    /// The routes, to serve next to the Socket.IO layer.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/health", get(health))
            .route("/api/analytics/video-plays", post(video_plays))
            .route("/api/auth/login", post(login))
            .route("/api/sites", post(create_site).get(list_sites))
            .route("/api/sites/{id}/regenerate-key", post(regenerate))
            .with_state(self.clone())
    }

    fn record(&self, path: &str, body: &Value) {
        self.state
            .requests
            .lock()
            .expect("lock")
            .push((path.to_owned(), body.clone()));
    }

    fn next(&self) -> u64 {
        self.state
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
    }

    /// The role behind a bearer token, or the 401 upstream answers.
    fn role(&self, headers: &HeaderMap) -> Result<String, Box<Response>> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else {
            return Err(Box::new(reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "Token manquant"}),
            )));
        };
        self.state
            .tokens
            .lock()
            .expect("lock")
            .get(token)
            .cloned()
            .ok_or_else(|| {
                Box::new(reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "Token invalide"}),
                ))
            })
    }

    fn new_key(&self) -> String {
        format!("{:064x}", 0xa11ce_u64 * 1_000_003 + self.next())
    }
}

async fn health() -> Response {
    reply(
        StatusCode::OK,
        json!({"status": "healthy", "timestamp": "2026-01-01T00:00:00Z"}),
    )
}

/// A UUID as upstream's `validateUuid` checks it (8-4-4-4-12 hex digits).
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Upstream's `recordVideoPlays` (no authentication): 400 without
/// `site_id` or plays, 404 for an unknown site, then one INSERT per play; a
/// play the database refuses (its `video_id` or `sponsor_id` references no
/// row, `video_filename` missing, a `trigger_type` other than auto/manual)
/// is skipped and only logged server-side. The answer counts the rows
/// inserted and does not say which plays were skipped.
async fn video_plays(State(api): State<Api>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    api.record("/api/analytics/video-plays", &body);
    {
        let mut fail = api.state.fail_plays.lock().expect("lock");
        if *fail > 0 {
            *fail -= 1;
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "Erreur lors de l'enregistrement des lectures"}),
            );
        }
    }
    let site_id = body["site_id"].as_str().unwrap_or("");
    let plays = body["plays"].as_array().cloned().unwrap_or_default();
    if site_id.is_empty() || plays.is_empty() {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "site_id et plays[] requis"}),
        );
    }
    if !api.sites.lock().expect("lock").contains_key(site_id) {
        return reply(StatusCode::NOT_FOUND, json!({"error": "Site non trouvé"}));
    }
    let videos = api.state.videos.lock().expect("lock").clone();
    let mut recorded = 0;
    for play in plays {
        // A non-UUID id is stored as NULL; a UUID must reference a row
        // (no sponsors exist in this table set).
        let video_ok = play["video_id"]
            .as_str()
            .is_none_or(|id| !is_uuid(id) || videos.contains(id));
        let sponsor_ok = play["sponsor_id"].as_str().is_none_or(|id| !is_uuid(id));
        let filename_ok = play["video_filename"].as_str().is_some();
        let trigger_ok = play["trigger_type"]
            .as_str()
            .is_none_or(|t| t.is_empty() || t == "auto" || t == "manual");
        if video_ok && sponsor_ok && filename_ok && trigger_ok {
            api.state.plays.lock().expect("lock").push(play);
            recorded += 1;
        }
    }
    reply(
        StatusCode::OK,
        json!({"success": true, "recorded": recorded}),
    )
}

async fn login(State(api): State<Api>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    api.record("/api/auth/login", &body);
    let email = body["email"].as_str().unwrap_or("");
    let password = body["password"].as_str().unwrap_or("");
    let account = api
        .state
        .accounts
        .lock()
        .expect("lock")
        .iter()
        .find(|a| a.email == email && a.password == password)
        .cloned();
    let Some(account) = account else {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Email ou mot de passe incorrect"}),
        );
    };
    if let Some(expected) = &account.mfa_code {
        match body.get("mfaCode").and_then(Value::as_str) {
            None => {
                return reply(
                    StatusCode::OK,
                    json!({"requireMfa": true, "userId": "u-1", "message": "Code MFA requis"}),
                );
            }
            Some(code) if code != expected => {
                return reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "Code MFA invalide"}),
                );
            }
            Some(_) => {}
        }
    }
    let token = format!("token-{}", api.next());
    api.state
        .tokens
        .lock()
        .expect("lock")
        .insert(token.clone(), account.role.clone());
    reply(
        StatusCode::OK,
        json!({"token": token, "user": {"id": "u-1", "email": email, "full_name": "Admin",
               "role": account.role, "mfa_enabled": account.mfa_code.is_some(),
               "sponsor_id": null, "agency_id": null}}),
    )
}

async fn create_site(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let role = match api.role(&headers) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if role != "admin" && role != "operator" {
        return reply(
            StatusCode::FORBIDDEN,
            json!({"error": "Permissions insuffisantes"}),
        );
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    api.record("/api/sites", &body);
    let mut details = Vec::new();
    for field in ["site_name", "club_name"] {
        if body[field].as_str().is_none_or(str::is_empty) {
            details.push(json!({"field": field, "message": format!("\"{field}\" is required")}));
        }
    }
    if !details.is_empty() {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "Données invalides", "details": details}),
        );
    }
    let mut name = body["site_name"].as_str().unwrap_or("").to_owned();
    let club = body["club_name"].as_str().unwrap_or("").to_owned();
    {
        let names = api.state.names.lock().expect("lock");
        let taken = |n: &str| names.values().any(|(s, _)| s == n);
        if taken(&name) {
            let mut n = 2;
            while taken(&format!("{name}-{n}")) {
                n += 1;
            }
            name = format!("{name}-{n}");
        }
    }
    let id = format!("00000000-0000-4000-8000-{:012}", api.next());
    let key = api.new_key();
    api.sites
        .lock()
        .expect("lock")
        .insert(id.clone(), key.clone());
    api.state
        .names
        .lock()
        .expect("lock")
        .insert(id.clone(), (name.clone(), club.clone()));
    reply(
        StatusCode::CREATED,
        json!({"id": id, "site_name": name, "club_name": club, "location": body["location"],
               "sports": body["sports"], "hardware_model": body["hardware_model"],
               "status": "offline", "created_at": "2026-01-01T00:00:00Z", "api_key": key,
               "api_key_warning": "Sauvegardez cette clé API. Elle ne sera plus jamais affichée."}),
    )
}

async fn list_sites(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Err(e) = api.role(&headers) {
        return *e;
    }
    let names = api.state.names.lock().expect("lock").clone();
    let mut data: Vec<Value> = names
        .iter()
        .map(|(id, (name, club))| json!({"id": id, "site_name": name, "club_name": club, "status": "offline"}))
        .collect();
    data.sort_by_key(|v| v["id"].as_str().unwrap_or("").to_owned());
    let total = data.len();
    reply(
        StatusCode::OK,
        json!({"data": data, "pagination": {"page": 1, "limit": 20, "total": total,
               "totalPages": 1, "hasNext": false, "hasPrev": false}}),
    )
}

async fn regenerate(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match api.role(&headers) {
        Ok(role) if role == "admin" => {}
        Ok(_) => {
            return reply(
                StatusCode::FORBIDDEN,
                json!({"error": "Permissions insuffisantes"}),
            );
        }
        Err(e) => return *e,
    }
    api.record(&format!("/api/sites/{id}/regenerate-key"), &Value::Null);
    if !api.sites.lock().expect("lock").contains_key(&id) {
        return reply(StatusCode::NOT_FOUND, json!({"error": "Site non trouvé"}));
    }
    let key = api.new_key();
    api.sites
        .lock()
        .expect("lock")
        .insert(id.clone(), key.clone());
    let (name, club) = api
        .state
        .names
        .lock()
        .expect("lock")
        .get(&id)
        .cloned()
        .unwrap_or_default();
    reply(
        StatusCode::OK,
        json!({"id": id, "site_name": name, "club_name": club, "status": "offline",
               "updated_at": "2026-01-01T00:00:00Z", "api_key": key,
               "api_key_warning": "Sauvegardez cette clé API. Elle ne sera plus jamais affichée."}),
    )
}
