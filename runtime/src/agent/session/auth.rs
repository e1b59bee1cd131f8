//! What to tell the operator when the server refuses to authenticate us
//! (the troubleshooting table of the original agent's README).

/// The fix for an `auth_error` message.
pub fn hint(message: &str) -> &'static str {
    if message.contains("Site non trouvé") {
        "This site does not exist on the central server: register it again with `neopro-runtime register`."
    } else if message.contains("Clé API invalide") {
        "The API key in site.conf does not match the server's: run `neopro-runtime resync`."
    } else if message.contains("Identifiants manquants") {
        "SITE_ID or SITE_API_KEY is empty: check /etc/neopro/site.conf."
    } else {
        "Check SITE_ID and SITE_API_KEY in /etc/neopro/site.conf, or run `neopro-runtime diagnose`."
    }
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn each_upstream_message_has_its_fix() {
        assert!(hint("Authentification échouée: Site non trouvé: abc").contains("register"));
        assert!(hint("Authentification échouée: Clé API invalide").contains("resync"));
        assert!(
            hint("Authentification échouée: Identifiants manquants")
                .contains("SITE_ID or SITE_API_KEY is empty")
        );
        assert!(hint("Authentification échouée: Erreur inconnue").contains("diagnose"));
    }
}
