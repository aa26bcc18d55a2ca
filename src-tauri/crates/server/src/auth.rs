//! Per-user bearer tokens, stored as SHA-256 digests and compared in
//! constant time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::meta::MetaStore;

/// A user and the token they authenticate with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct UserToken {
    /// The user's name (unique).
    pub name: String,
    /// Their bearer token, kept only as a digest in the database.
    pub token: String,
}

impl std::str::FromStr for UserToken {
    type Err = String;

    /// Parses `NAME:TOKEN`, as `--user` takes it.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (name, token) = value.split_once(':').ok_or_else(|| format!("'{value}' is not NAME:TOKEN"))?;
        if name.trim().is_empty() || token.len() < 8 {
            return Err(format!(
                "'{value}': the name must not be empty and the token needs at least 8 characters"
            ));
        }
        Ok(Self { name: name.trim().to_owned(), token: token.to_owned() })
    }
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Makes the database's users exactly `users`: new ones added, changed
/// tokens replaced. Users no longer configured keep their recordings but
/// can no longer sign in.
pub async fn sync_users(meta: &dyn MetaStore, users: Vec<UserToken>) -> crate::Result<()> {
    meta.sync_users(users.into_iter().map(|user| (user.name, digest(&user.token))).collect()).await
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct User {
    /// The user's row id.
    pub id: i64,
    /// The user's name.
    pub name: String,
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        let wanted = digest(token);
        let found = state.meta.user_by_token_digest(wanted.clone()).await?;
        match found {
            // The index lookup finds the row; the constant-time comparison
            // keeps the final check from leaking how much of a digest matched.
            Some((id, name, stored)) if bool::from(stored.ct_eq(&wanted)) => Ok(User { id, name }),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_flag_parses_name_and_token() {
        let user: UserToken = "teacher:s3cret-token".parse().unwrap();
        assert_eq!((user.name.as_str(), user.token.as_str()), ("teacher", "s3cret-token"));
        assert!("no-colon".parse::<UserToken>().is_err());
        assert!(":emptyname-token".parse::<UserToken>().is_err());
        assert!("short:abc".parse::<UserToken>().is_err());
    }
}
