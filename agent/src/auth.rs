//! The bearer-token check shared by the gRPC layer and the HTTP middleware.

use std::sync::Arc;

use http::HeaderMap;
use subtle::ConstantTimeEq;

/// Why a request was refused; the message tells the caller what to send instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
}

/// The token an agent requires, if any. Cheap to clone into every layer.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    token: Option<Arc<[u8]>>,
}

impl Guard {
    pub fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(|t| Arc::from(t.as_bytes())),
        }
    }

    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Checks the `authorization` header. The comparison takes the same time whatever the
    /// presented token shares with the real one.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .ok_or(AuthError::Missing)?;
        if bool::from(presented.ct_eq(expected)) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
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
        assert_eq!(Guard::new(None).check(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn the_token_must_match_exactly() {
        let g = Guard::new(Some("s3cret"));
        assert_eq!(g.check(&headers("Bearer s3cret")), Ok(()));
        assert_eq!(g.check(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(g.check(&headers("s3cret")), Err(AuthError::Missing));
        assert_eq!(g.check(&headers("Bearer s3cre")), Err(AuthError::Invalid));
        assert_eq!(g.check(&headers("Bearer s3cret2")), Err(AuthError::Invalid));
        assert_eq!(g.check(&headers("Bearer ")), Err(AuthError::Invalid));
    }
}
