//! How the client authenticates: a token (read from a file or an environment variable, never
//! from argv), or a GitHub App (a JWT signed with the App's private key, exchanged for
//! installation tokens that are cached and refreshed before they expire).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::ForgeError;

/// The credential the client uses.
#[derive(Clone)]
pub enum ForgeAuth {
    /// A personal access token, fine-grained token or any bearer token.
    Token(SecretString),
    /// A GitHub App.
    App(AppCredentials),
}

impl std::fmt::Debug for ForgeAuth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForgeAuth::Token(_) => formatter.write_str("Token([REDACTED])"),
            ForgeAuth::App(app) => formatter
                .debug_struct("App")
                .field("app_id", &app.app_id)
                .field("installation_id", &app.installation_id)
                .finish_non_exhaustive(),
        }
    }
}

/// A GitHub App's identity.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_id: u64,
    /// The App's private key (PEM, PKCS#1 as GitHub issues it, or PKCS#8).
    pub private_key_pem: SecretString,
    /// The installation to act as; found from the repository (`GET /repos/{o}/{r}/installation`)
    /// when `None`.
    pub installation_id: Option<u64>,
}

impl ForgeAuth {
    /// A token from a file (surrounding whitespace trimmed); the file must hold one line.
    pub fn token_from_file(path: &Path) -> Result<ForgeAuth, ForgeError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ForgeError::Config(format!(
                "read the forge token file {}: {err}",
                path.display()
            ))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ForgeError::Config(format!(
                "the forge token file {} is empty; write the token into it",
                path.display()
            )));
        }
        if token.contains(char::is_whitespace) {
            return Err(ForgeError::Config(format!(
                "the forge token file {} holds more than one word; it must hold the token alone",
                path.display()
            )));
        }
        Ok(ForgeAuth::Token(SecretString::from(token.to_owned())))
    }

    /// A token from an environment variable.
    pub fn token_from_env(variable: &str) -> Result<ForgeAuth, ForgeError> {
        let value = std::env::var(variable).map_err(|_| {
            ForgeError::Config(format!(
                "the environment variable {variable} (the forge token) is not set"
            ))
        })?;
        let token = value.trim();
        if token.is_empty() {
            return Err(ForgeError::Config(format!(
                "the environment variable {variable} (the forge token) is empty"
            )));
        }
        Ok(ForgeAuth::Token(SecretString::from(token.to_owned())))
    }

    /// A GitHub App whose private key is in a PEM file.
    pub fn app_from_key_file(
        app_id: u64,
        key_file: &Path,
        installation_id: Option<u64>,
    ) -> Result<ForgeAuth, ForgeError> {
        let pem = std::fs::read_to_string(key_file).map_err(|err| {
            ForgeError::Config(format!(
                "read the GitHub App's private key {}: {err}",
                key_file.display()
            ))
        })?;
        let auth = ForgeAuth::App(AppCredentials {
            app_id,
            private_key_pem: SecretString::from(pem),
            installation_id,
        });
        auth.check()?;
        Ok(auth)
    }

    /// Checks what can be checked offline (the App's key parses).
    pub fn check(&self) -> Result<(), ForgeError> {
        match self {
            ForgeAuth::Token(_) => Ok(()),
            ForgeAuth::App(app) => encoding_key(app).map(|_| ()),
        }
    }
}

fn encoding_key(app: &AppCredentials) -> Result<EncodingKey, ForgeError> {
    EncodingKey::from_rsa_pem(app.private_key_pem.expose_secret().as_bytes()).map_err(|err| {
        ForgeError::Config(format!(
            "the GitHub App's private key is not an RSA key in PEM ({err}); use the .pem file GitHub generated"
        ))
    })
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

/// A JWT for the App: issued a minute in the past (clock drift), valid nine minutes (GitHub
/// allows ten at most).
pub(crate) fn app_jwt(app: &AppCredentials, now: SystemTime) -> Result<SecretString, ForgeError> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = Claims {
        iat: now.saturating_sub(60),
        exp: now + 9 * 60,
        iss: app.app_id.to_string(),
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &encoding_key(app)?)
        .map_err(|err| ForgeError::Config(format!("sign the GitHub App's JWT: {err}")))?;
    Ok(SecretString::from(token))
}

/// An installation token and when to replace it.
#[derive(Clone)]
pub(crate) struct InstallationToken {
    pub token: SecretString,
    pub refresh_at: SystemTime,
    pub expires_at: SystemTime,
}

impl InstallationToken {
    /// `margin` before expiry, but never later than half its lifetime (short-lived tokens).
    pub fn new(
        token: SecretString,
        issued_at: SystemTime,
        expires_at: SystemTime,
        margin: Duration,
    ) -> InstallationToken {
        let lifetime = expires_at.duration_since(issued_at).unwrap_or_default();
        let early = margin.min(lifetime / 2);
        InstallationToken {
            token,
            refresh_at: expires_at.checked_sub(early).unwrap_or(expires_at),
            expires_at,
        }
    }

    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.refresh_at && now < self.expires_at
    }
}

/// The App's cached installation ids and tokens.
#[derive(Default)]
pub(crate) struct AppState {
    /// `owner/name` → installation id.
    pub installations: HashMap<String, u64>,
    pub tokens: HashMap<u64, InstallationToken>,
}
