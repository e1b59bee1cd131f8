//! `neopro-runtime register`: creates this box's site on the central server
//! and writes site.conf with its id and API key (protocol notes §8.3).
//! Unlike the upstream script: the password is not echoed, an MFA account
//! works, the key is never printed in full unless asked, and site.conf is
//! 0600 owned by the agent's user.

use super::central_api::{CentralApi, NewSite, login_with_mfa, mask_key};
use super::prompt::Prompter;
use super::{Context, OpsError, owner_for, password, pick, site_file, value_or_ask};
use std::io::Write;

/// The central server a box talks to unless told otherwise (upstream's).
pub const DEFAULT_SERVER_URL: &str = "https://neopro-central-production.up.railway.app";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegisterArgs {
    /// Central server URL (env CENTRAL_SERVER_URL; default: site.conf's, else production).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Admin or operator account e-mail (env ADMIN_EMAIL).
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from the first line of stdin (env ADMIN_PASSWORD also works).
    #[arg(long)]
    pub password_stdin: bool,
    /// MFA code, for accounts with multi-factor authentication (env ADMIN_MFA_CODE).
    #[arg(long, value_name = "CODE")]
    pub mfa_code: Option<String>,
    /// Site name (env SITE_NAME).
    #[arg(long)]
    pub site_name: Option<String>,
    /// Club name (env CLUB_NAME).
    #[arg(long)]
    pub club_name: Option<String>,
    /// City (env LOCATION_CITY).
    #[arg(long)]
    pub city: Option<String>,
    /// Region (env LOCATION_REGION; default Bretagne).
    #[arg(long)]
    pub region: Option<String>,
    /// Country (env LOCATION_COUNTRY; default France).
    #[arg(long)]
    pub country: Option<String>,
    /// Sports, comma separated (env SPORTS; default handball).
    #[arg(long)]
    pub sports: Option<String>,
    /// Hardware model (env HARDWARE_MODEL; default: detected).
    #[arg(long)]
    pub hardware_model: Option<String>,
    /// When run as root: give site.conf to this user (the agent's).
    #[arg(long)]
    pub user: Option<String>,
    /// Print the full API key (it is saved in site.conf either way).
    #[arg(long)]
    pub show_key: bool,
    /// Register even though site.conf already has a SITE_ID.
    #[arg(long)]
    pub force: bool,
    /// Never ask: every value comes from flags or the environment.
    #[arg(long)]
    pub non_interactive: bool,
    /// The password when already known (from stdin or the environment).
    #[arg(skip)]
    pub password: Option<String>,
}

/// What register did.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub site_id: String,
    pub site_name: String,
    pub api_key: String,
}

/// This machine's model: the device tree's (a Pi), else the architecture.
pub fn detect_hardware_model() -> String {
    match std::fs::read("/proc/device-tree/model") {
        Ok(bytes) => {
            let text: String = String::from_utf8_lossy(&bytes).replace('\0', "");
            let text = text.trim();
            if text.is_empty() {
                format!("Unknown ({})", std::env::consts::ARCH)
            } else {
                text.to_owned()
            }
        }
        Err(_) => format!("Unknown ({})", std::env::consts::ARCH),
    }
}

/// Registers the box; progress and the summary go to `out`.
pub async fn register(
    args: &RegisterArgs,
    ctx: &Context<'_>,
    prompter: &mut dyn Prompter,
    out: &mut dyn Write,
) -> Result<Registered, OpsError> {
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
    let existing_values = match &existing {
        Some(text) => neopro_runtime::config::parse_dotenv(path, text)?,
        None => Default::default(),
    };
    if let Some(id) = existing_values.get("SITE_ID").filter(|v| !v.is_empty())
        && !args.force
    {
        return Err(OpsError::AlreadyRegistered {
            path: path.clone(),
            site_id: id.clone(),
        });
    }
    // Fail before creating anything on the server.
    site_file::check_writable(path)?;
    let owner = owner_for(ctx, args.user.as_deref(), path)?;

    let configured_url = existing_values
        .get("CENTRAL_SERVER_URL")
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned());
    let missing = |what, flag, env| OpsError::Missing { what, flag, env };
    let server = value_or_ask(
        prompter,
        pick(&args.server, ctx, "CENTRAL_SERVER_URL"),
        "Central server URL",
        Some(&configured_url),
        missing("the server URL", "--server", "CENTRAL_SERVER_URL"),
    )?;
    let email = value_or_ask(
        prompter,
        pick(&args.email, ctx, "ADMIN_EMAIL"),
        "Admin e-mail",
        None,
        missing("the admin e-mail", "--email", "ADMIN_EMAIL"),
    )?;
    let password = password(
        prompter,
        args.password.clone().or_else(|| ctx.env("ADMIN_PASSWORD")),
    )?;
    let site_name = value_or_ask(
        prompter,
        pick(&args.site_name, ctx, "SITE_NAME"),
        "Site name (e.g. Gymnase Jean Moulin)",
        None,
        missing("the site name", "--site-name", "SITE_NAME"),
    )?;
    let club_name = value_or_ask(
        prompter,
        pick(&args.club_name, ctx, "CLUB_NAME"),
        "Club name",
        None,
        missing("the club name", "--club-name", "CLUB_NAME"),
    )?;
    let city = value_or_ask(
        prompter,
        pick(&args.city, ctx, "LOCATION_CITY"),
        "City",
        Some(""),
        missing("the city", "--city", "LOCATION_CITY"),
    )?;
    let region = value_or_ask(
        prompter,
        pick(&args.region, ctx, "LOCATION_REGION"),
        "Region",
        Some("Bretagne"),
        missing("the region", "--region", "LOCATION_REGION"),
    )?;
    let country = value_or_ask(
        prompter,
        pick(&args.country, ctx, "LOCATION_COUNTRY"),
        "Country",
        Some("France"),
        missing("the country", "--country", "LOCATION_COUNTRY"),
    )?;
    let sports = value_or_ask(
        prompter,
        pick(&args.sports, ctx, "SPORTS"),
        "Sports (comma separated)",
        Some("handball"),
        missing("the sports", "--sports", "SPORTS"),
    )?;
    let detected = detect_hardware_model();
    let hardware_model = value_or_ask(
        prompter,
        pick(&args.hardware_model, ctx, "HARDWARE_MODEL"),
        "Hardware model",
        Some(&detected),
        missing("the hardware model", "--hardware-model", "HARDWARE_MODEL"),
    )?;

    let api = CentralApi::new(&server)?;
    let mfa = pick(&args.mfa_code, ctx, "ADMIN_MFA_CODE");
    let token = login_with_mfa(&api, &email, &password, mfa.as_deref(), prompter).await?;
    let new_site = NewSite {
        site_name: site_name.clone(),
        club_name: club_name.clone(),
        city: city.clone(),
        region: region.clone(),
        country: country.clone(),
        sports: sports
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        hardware_model: hardware_model.clone(),
    };
    let site = api.create_site(&token, &new_site).await?;
    let api_key = site.api_key.clone().unwrap_or_default();
    // The server may have suffixed the name (`-2`) to keep it unique.
    let final_name = if site.site_name.is_empty() {
        site_name
    } else {
        site.site_name.clone()
    };
    let updates = [
        ("CENTRAL_SERVER_URL", api.base().to_owned()),
        ("CENTRAL_SERVER_ENABLED", "true".to_owned()),
        ("SITE_ID", site.id.clone()),
        ("SITE_API_KEY", api_key.clone()),
        ("SITE_NAME", final_name.clone()),
        ("CLUB_NAME", club_name),
        ("LOCATION_CITY", city),
        ("LOCATION_REGION", region),
        ("LOCATION_COUNTRY", country),
        ("SPORTS", sports),
        ("HARDWARE_MODEL", hardware_model),
    ];
    let base = existing.unwrap_or_else(|| {
        format!(
            "# NEOPRO site configuration, written by `neopro-runtime register` on {}.\n\
             # Holds this site's API key: keep it mode 0600. Every key is explained in\n\
             # site.conf.example; unset folders default to /home/pi/neopro/...\n",
            neopro_runtime::platform::clock::iso8601(std::time::SystemTime::now())
        )
    });
    let text = site_file::set_keys(&base, &updates);
    if let Err(e) = site_file::write_private(path, &text, owner) {
        return Err(OpsError::CreatedNotSaved {
            site_id: site.id,
            path: path.clone(),
            reason: e.to_string(),
        });
    }
    let shown = if args.show_key {
        api_key.clone()
    } else {
        format!("{} (--show-key to print it)", mask_key(&api_key))
    };
    let _ = writeln!(
        out,
        "Site registered on {}\n  Site ID:   {}\n  Site name: {final_name}\n  API key:   {shown}\n\
         Saved to {} (mode 0600). The server will never show this key again; \
         `neopro-runtime resync` makes a new one.\n\
         Next: `sudo neopro-runtime install-service` (or restart the agent if it is installed).",
        api.base(),
        site.id,
        path.display()
    );
    Ok(Registered {
        site_id: site.id,
        site_name: final_name,
        api_key,
    })
}
