//! Bearer tokens, shared by the gRPC layer and the HTTP middleware: several named tokens, each
//! with a scope (`read` or `admin`), so a token can be rotated by adding the new one before
//! removing the old. Secrets are compared in constant time and never logged; a tokens file is
//! re-read when it changes, so rotation needs no restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// How often a tokens file is looked at for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What a token may do. `Admin` includes everything `Read` may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Reads: lists, gets, searches, downloads, predictions, status.
    Read,
    /// Every mutation: triggers, promotions, ingests, uploads, load tests, deletes.
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            other => Err(format!("scope {other:?} is not read or admin")),
        }
    }
}

/// One token as configured. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: String,
    pub scope: Scope,
    secret: String,
}

impl fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSpec")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TokenSpec {
    /// A token after checking that its name is plain and its secret can travel in a header.
    pub fn new(name: &str, scope: Scope, secret: &str) -> Result<Self, String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(format!(
                "token name {name:?}: use letters, digits, '.', '_' and '-'"
            ));
        }
        if secret.is_empty() {
            return Err(format!("token {name:?}: the secret is empty"));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "token {name:?}: only visible ASCII characters can travel in an HTTP header"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            scope,
            secret: secret.to_owned(),
        })
    }
}

/// Reads a tokens file: one `name:scope:secret` a line; blank lines and `#` comments are
/// skipped. Errors name the line, never the secret.
pub fn parse_tokens(text: &str) -> Result<Vec<TokenSpec>, String> {
    let mut tokens: Vec<TokenSpec> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(name), Some(scope), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("line {}: write name:scope:secret", n + 1));
        };
        let scope = scope.parse().map_err(|e| format!("line {}: {e}", n + 1))?;
        let token = TokenSpec::new(name.trim(), scope, secret.trim())
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        tokens.push(token);
    }
    check_distinct(&tokens)?;
    Ok(tokens)
}

/// Two tokens with one name, or one secret under two names, are a mistake worth refusing.
pub fn check_distinct(tokens: &[TokenSpec]) -> Result<(), String> {
    for (i, a) in tokens.iter().enumerate() {
        for b in &tokens[..i] {
            if a.name == b.name {
                return Err(format!("token name {:?} is used twice", a.name));
            }
            if a.secret == b.secret {
                return Err(format!(
                    "tokens {:?} and {:?} have the same secret",
                    b.name, a.name
                ));
            }
        }
    }
    Ok(())
}

/// Why a request was refused; the message tells the caller what to send instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    #[error("token {name:?} has scope {}; this call needs {}", have.name(), need.name())]
    Forbidden {
        name: String,
        have: Scope,
        need: Scope,
    },
}

/// A token as the guard keeps it: the secret's SHA-256, so every comparison is over 32 bytes
/// and takes the same time whatever the presented token's length or content.
struct Entry {
    name: String,
    scope: Scope,
    digest: [u8; 32],
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

fn entries(tokens: &[TokenSpec]) -> Arc<[Entry]> {
    tokens
        .iter()
        .map(|t| Entry {
            name: t.name.clone(),
            scope: t.scope,
            digest: digest(t.secret.as_bytes()),
        })
        .collect()
}

/// The tokens an agent accepts, if any. Cheap to clone into every layer; a reload is seen by
/// every clone.
#[derive(Clone, Default)]
pub struct Guard {
    tokens: Arc<RwLock<Arc<[Entry]>>>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .current()
            .iter()
            .map(|e| format!("{}:{}", e.name, e.scope.name()))
            .collect();
        f.debug_struct("Guard").field("tokens", &names).finish()
    }
}

impl Guard {
    /// One admin token, or none (every call open).
    pub fn new(token: Option<&str>) -> Self {
        let tokens: Vec<TokenSpec> = token
            .map(|secret| TokenSpec {
                name: "token".into(),
                scope: Scope::Admin,
                secret: secret.to_owned(),
            })
            .into_iter()
            .collect();
        Self::with_tokens(&tokens)
    }

    pub fn with_tokens(tokens: &[TokenSpec]) -> Self {
        Self {
            tokens: Arc::new(RwLock::new(entries(tokens))),
        }
    }

    /// The settings' tokens; with a tokens file, it is re-read when it changes until
    /// `shutdown`, so tokens rotate without a restart. Must run inside a tokio runtime.
    pub fn from_settings(
        settings: &crate::settings::Settings,
        shutdown: &CancellationToken,
    ) -> Self {
        let guard = Self::with_tokens(&settings.tokens);
        if let Some(path) = &settings.tokens_file {
            tokio::spawn(guard.clone().watch(
                path.clone(),
                settings.token.clone(),
                shutdown.clone(),
            ));
        }
        guard
    }

    fn current(&self) -> Arc<[Entry]> {
        // A poisoned lock still holds a whole token list: writers only swap the Arc.
        match self.tokens.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn required(&self) -> bool {
        !self.current().is_empty()
    }

    /// Checks the `authorization` header against every token and the scope the call needs;
    /// returns the token's name (for logs: the name, never the secret). Every token is compared,
    /// in constant time, whichever matches.
    pub fn check(&self, headers: &HeaderMap, need: Scope) -> Result<Option<String>, AuthError> {
        let tokens = self.current();
        if tokens.is_empty() {
            return Ok(None);
        }
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .ok_or(AuthError::Missing)?;
        let presented = digest(presented);
        let mut found: Option<&Entry> = None;
        for entry in tokens.iter() {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        let entry = found.ok_or(AuthError::Invalid)?;
        if entry.scope < need {
            return Err(AuthError::Forbidden {
                name: entry.name.clone(),
                have: entry.scope,
                need,
            });
        }
        Ok(Some(entry.name.clone()))
    }

    /// Re-reads `path` when its modification time or size changes. A file that no longer
    /// parses leaves the previous tokens in force, with an error in the log.
    async fn watch(self, path: PathBuf, single: Option<String>, shutdown: CancellationToken) {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut seen = stamp(&path);
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamp(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match crate::settings::all_tokens(single.as_deref(), Some(&path)) {
                Ok(tokens) if tokens.is_empty() => {
                    tracing::error!(file = %path.display(), "the tokens file is now empty; keeping the previous tokens");
                }
                Ok(tokens) => {
                    let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
                    tracing::info!(file = %path.display(), tokens = ?names, "tokens reloaded");
                    let fresh = entries(&tokens);
                    match self.tokens.write() {
                        Ok(mut t) => *t = fresh,
                        Err(poisoned) => *poisoned.into_inner() = fresh,
                    }
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "tokens file refused; keeping the previous tokens");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn no_token_means_open() {
        assert_eq!(
            Guard::new(None).check(&HeaderMap::new(), Scope::Admin),
            Ok(None)
        );
    }

    #[test]
    fn the_token_must_match_exactly() {
        let g = Guard::new(Some("s3cret"));
        let admin = Scope::Admin;
        assert_eq!(
            g.check(&headers("Bearer s3cret"), admin),
            Ok(Some("token".into()))
        );
        assert_eq!(g.check(&HeaderMap::new(), admin), Err(AuthError::Missing));
        assert_eq!(g.check(&headers("s3cret"), admin), Err(AuthError::Missing));
        assert_eq!(
            g.check(&headers("Bearer s3cre"), admin),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            g.check(&headers("Bearer s3cret2"), admin),
            Err(AuthError::Invalid)
        );
        assert_eq!(g.check(&headers("Bearer "), admin), Err(AuthError::Invalid));
    }

    #[test]
    fn scopes_and_several_tokens() {
        let tokens = parse_tokens(
            "# rotation under way\nold:admin:aaa\nnew:admin:bbb\n\nviewer:read:ccc:with-colon\n",
        )
        .unwrap();
        assert_eq!(tokens.len(), 3);
        assert!(!format!("{tokens:?}").contains("aaa"), "{tokens:?}");
        let g = Guard::with_tokens(&tokens);
        for secret in ["aaa", "bbb"] {
            assert!(
                g.check(&headers(&format!("Bearer {secret}")), Scope::Admin)
                    .is_ok()
            );
        }
        let viewer = headers("Bearer ccc:with-colon");
        assert_eq!(g.check(&viewer, Scope::Read), Ok(Some("viewer".into())));
        assert!(matches!(
            g.check(&viewer, Scope::Admin),
            Err(AuthError::Forbidden {
                have: Scope::Read,
                need: Scope::Admin,
                ..
            })
        ));
        for bad in [
            "x:root:abc",
            "x:read",
            "x:read:",
            "x y:read:abc",
            "a:read:s1\na:admin:s2",
            "a:read:zz9\nb:admin:zz9",
            "a:read:has space",
        ] {
            let err = parse_tokens(bad).unwrap_err();
            assert!(!err.contains("s1") && !err.contains("zz9"), "{err}");
        }
    }
}
