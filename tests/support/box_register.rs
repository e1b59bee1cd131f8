//! How a club's box is registered, as its installer does it: the
//! `site.conf` written before `neopro-runtime register` (the central's
//! address, the heartbeat the tests use) and register's argument vector,
//! non-interactive, the password on standard input. Shared by the system
//! tests' install scenario and the power-cut rig's set-up; the xtask crate
//! includes this file by path (it links nothing of the e2e crate), so it
//! uses `std` only.

/// `site.conf` before `register` (which adds the site's id and key).
/// `writer` names who wrote it, in its first line.
pub fn site_conf(writer: &str, central_url: &str) -> String {
    format!(
        "# written by {writer} before `register`\n\
         CENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL={central_url}\nHEARTBEAT_INTERVAL=2000\n"
    )
}

/// `neopro-runtime register …` for a handball club in Lyon, logging in
/// as `email` (the password goes to its standard input).
pub fn register_args(server: &str, email: &str, site: &str, club: &str) -> Vec<String> {
    [
        "neopro-runtime",
        "register",
        "--server",
        server,
        "--email",
        email,
        "--password-stdin",
        "--site-name",
        site,
        "--club-name",
        club,
        "--city",
        "Lyon",
        "--region",
        "Auvergne-Rhône-Alpes",
        "--country",
        "France",
        "--sports",
        "handball",
        "--non-interactive",
    ]
    .map(str::to_owned)
    .to_vec()
}
