//! Whose pool a logging-in client uses. The pool a client names is its configured user's
//! (the `user`/`password` keys of `[[pools]]`); another role gets its own pool of the same
//! database ([`Pool::for_user`]) when `[[users]]` lists it, or when `auth_query`, run on the
//! server as `auth_user`, finds its SCRAM verifier.

use super::ClientError;
use crate::auth::scram::ScramSecret;
use crate::backend::{Pool, UserAuth};
use crate::config::Config;

/// The pool of `user` on database pool `db`. A role nobody knows fails as a wrong password
/// does, so that a client cannot tell which roles exist.
pub async fn user_pool(db: &Pool, user: &str, config: &Config) -> Result<Pool, ClientError> {
    if user == db.addr().user {
        return Ok(db.clone());
    }
    if let Some(listed) = config.user(user) {
        if !listed.may_use(db.name()) {
            return Err(ClientError::Rejected {
                code: "28000".into(),
                message: format!("user \"{user}\" may not use pool \"{}\"", db.name()),
            });
        }
        return Ok(db.for_user(user, UserAuth::from_config(Some(&listed.password))));
    }
    let g = &config.general;
    let Some(auth_user) = g.auth_user.as_deref() else {
        return Err(ClientError::wrong_password(user));
    };
    let auth = UserAuth::from_config(g.auth_password.as_deref());
    let secret = lookup(&db.for_user(auth_user, auth), &g.auth_query, user).await?;
    Ok(db.for_user(user, UserAuth::Verifier(secret)))
}

/// Runs `auth_query` for `user` on a connection of `auth_pool`.
async fn lookup(auth_pool: &Pool, query: &str, user: &str) -> Result<ScramSecret, ClientError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        ClientError::ServerUnavailable(format!(
            "auth_query on pool \"{}\" failed: {e}",
            auth_pool.name()
        ))
    };
    let mut conn = auth_pool.get().await.map_err(|e| unavailable(&e))?;
    let row = conn.server().query_row(query, &[user]).await;
    conn.release(None).await;
    let row = row.map_err(|e| unavailable(&e))?;
    let Some(Some(password)) = row.and_then(|r| r.into_iter().nth(1)) else {
        return Err(ClientError::wrong_password(user));
    };
    ScramSecret::from_verifier(&password).ok_or_else(|| ClientError::Rejected {
        code: "28000".into(),
        message: format!(
            "the server keeps no SCRAM verifier for \"{user}\" (auth_query needs password_encryption = scram-sha-256)"
        ),
    })
}
