//! `neopro-runtime resync`: asks the central server for a new API key for
//! this site and saves it in site.conf (protocol notes §8.4), for the
//! `Clé API invalide` case. Reads the site list from the `data` field the
//! server really returns (the upstream script read `sites`).

use super::central_api::{CentralApi, login_with_mfa, mask_key};
use super::prompt::Prompter;
use super::{Context, OpsError, owner_for, password, pick, site_file, value_or_ask};
use std::io::Write;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ResyncArgs {
    /// Central server URL (default: site.conf's CENTRAL_SERVER_URL).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The site to re-key (default: site.conf's SITE_ID; else chosen from the server's list).
    #[arg(long)]
    pub site_id: Option<String>,
    /// Admin account e-mail (env ADMIN_EMAIL).
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from the first line of stdin (env ADMIN_PASSWORD also works).
    #[arg(long)]
    pub password_stdin: bool,
    /// MFA code (env ADMIN_MFA_CODE).
    #[arg(long, value_name = "CODE")]
    pub mfa_code: Option<String>,
    /// When run as root: give site.conf to this user (default: keep its owner).
    #[arg(long)]
    pub user: Option<String>,
    /// Print the full new API key.
    #[arg(long)]
    pub show_key: bool,
    /// Never ask: every value comes from flags, the environment or site.conf.
    #[arg(long)]
    pub non_interactive: bool,
    #[arg(skip)]
    pub password: Option<String>,
}

/// Re-keys the site; returns (site id, new key).
pub async fn resync(
    args: &ResyncArgs,
    ctx: &Context<'_>,
    prompter: &mut dyn Prompter,
    out: &mut dyn Write,
) -> Result<(String, String), OpsError> {
    let path = &ctx.config_path;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(site_file::SiteFileError::Write {
                path: path.clone(),
                source,
            }
            .into());
        }
    };
    let values = match &existing {
        Some(text) => neopro_runtime::config::parse_dotenv(path, text)?,
        None => Default::default(),
    };
    let from_file = |k: &str| values.get(k).filter(|v| !v.is_empty()).cloned();
    site_file::check_writable(path)?;
    let owner = owner_for(ctx, args.user.as_deref(), path)?;

    let server = pick(&args.server, ctx, "CENTRAL_SERVER_URL")
        .or_else(|| from_file("CENTRAL_SERVER_URL"))
        .ok_or(OpsError::Missing {
            what: "CENTRAL_SERVER_URL (not set in site.conf)",
            flag: "--server",
            env: "CENTRAL_SERVER_URL",
        })?;
    let email = value_or_ask(
        prompter,
        pick(&args.email, ctx, "ADMIN_EMAIL"),
        "Admin e-mail",
        None,
        OpsError::Missing {
            what: "the admin e-mail",
            flag: "--email",
            env: "ADMIN_EMAIL",
        },
    )?;
    let password = password(
        prompter,
        args.password.clone().or_else(|| ctx.env("ADMIN_PASSWORD")),
    )?;
    let api = CentralApi::new(&server)?;
    let mfa = pick(&args.mfa_code, ctx, "ADMIN_MFA_CODE");
    let token = login_with_mfa(&api, &email, &password, mfa.as_deref(), prompter).await?;

    let site_id = match args.site_id.clone().or_else(|| from_file("SITE_ID")) {
        Some(id) => id,
        None => choose_site(&api, &token, prompter, out).await?,
    };
    let site = api.regenerate_key(&token, &site_id).await?;
    let key = site.api_key.clone().unwrap_or_default();
    let mut updates = vec![("SITE_ID", site.id.clone()), ("SITE_API_KEY", key.clone())];
    if existing.is_none() {
        updates.insert(0, ("CENTRAL_SERVER_ENABLED", "true".to_owned()));
        updates.insert(0, ("CENTRAL_SERVER_URL", api.base().to_owned()));
        updates.push(("SITE_NAME", site.site_name.clone()));
    }
    let base = existing.unwrap_or_else(|| {
        "# NEOPRO site configuration, written by `neopro-runtime resync`.\n".to_owned()
    });
    if let Err(e) = site_file::write_private(path, &site_file::set_keys(&base, &updates), owner) {
        return Err(OpsError::KeyNotSaved {
            site_id: site.id,
            key,
            path: path.clone(),
            reason: e.to_string(),
        });
    }
    let shown = if args.show_key {
        key.clone()
    } else {
        mask_key(&key)
    };
    let _ = writeln!(
        out,
        "New API key for site {} ({}): {shown}\nSaved to {}. The agent uses it at its next \
         connection; `sudo systemctl restart neopro-runtime` applies it now.",
        site.id,
        site.site_name,
        path.display()
    );
    Ok((site.id, key))
}

/// No SITE_ID anywhere: list the server's sites and let the operator pick.
async fn choose_site(
    api: &CentralApi,
    token: &str,
    prompter: &mut dyn Prompter,
    out: &mut dyn Write,
) -> Result<String, OpsError> {
    let sites = api.list_sites(token).await?;
    if sites.is_empty() {
        return Err(OpsError::Choice(
            "the central server has no site: register this box with `neopro-runtime register`"
                .to_owned(),
        ));
    }
    let listing: Vec<String> = sites
        .iter()
        .enumerate()
        .map(|(i, s)| format!("  {}. {} ({}) — {}", i + 1, s.site_name, s.club_name, s.id))
        .collect();
    if !prompter.interactive() {
        return Err(OpsError::Choice(format!(
            "SITE_ID is not set: pass --site-id, one of:\n{}",
            listing.join("\n")
        )));
    }
    let _ = writeln!(out, "Sites on {}:\n{}", api.base(), listing.join("\n"));
    loop {
        let answer = value_or_ask(
            prompter,
            None,
            "Number of this box's site",
            None,
            OpsError::Choice(String::new()),
        )?;
        match answer.parse::<usize>() {
            Ok(n) if (1..=sites.len()).contains(&n) => return Ok(sites[n - 1].id.clone()),
            _ => {
                let _ = writeln!(out, "Type a number between 1 and {}.", sites.len());
            }
        }
    }
}
