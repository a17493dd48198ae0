//! The server side of SCRAM-SHA-256 (RFC 5802/7677), as PostgreSQL runs it: no channel
//! binding without TLS, the user name in the SCRAM message ignored in favour of the
//! startup packet's.
//!
//! The salted password is derived once per pool ([`ScramSecret::new`]): PBKDF2 with 4096
//! iterations costs milliseconds, too much to pay on every login.

use super::md5::constant_time_eq;
use super::AuthError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const MECHANISM: &str = "SCRAM-SHA-256";
const ITERATIONS: u32 = 4096;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Stored key material for one password (what PostgreSQL keeps in `pg_authid`).
#[derive(Clone)]
pub struct ScramSecret {
    salt: [u8; 16],
    iterations: u32,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramSecret(..)")
    }
}

impl ScramSecret {
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::with_salt(password, salt, ITERATIONS)
    }

    pub fn with_salt(password: &str, salt: [u8; 16], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        ScramSecret {
            salt,
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

/// One exchange, after the client's first message.
pub struct ScramExchange<'a> {
    secret: &'a ScramSecret,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl<'a> ScramExchange<'a> {
    /// Takes the SASLInitialResponse data; returns the exchange and the server-first message.
    pub fn start(
        secret: &'a ScramSecret,
        client_first: &[u8],
    ) -> Result<(Self, String), AuthError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        // gs2-header: "n,," (no binding) or "y,," (client could bind, server did not offer).
        let bare = match text.get(..3) {
            Some("n,,") | Some("y,,") => &text[3..],
            _ if text.starts_with("p=") => return Err(AuthError::ChannelBinding),
            _ => return Err(AuthError::Malformed("bad GS2 header")),
        };
        let client_nonce = bare
            .split(',')
            .find_map(|attr| attr.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(AuthError::Malformed("missing client nonce"))?;
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        let nonce = format!("{client_nonce}{}", B64.encode(raw));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(secret.salt),
            secret.iterations
        );
        Ok((
            ScramExchange {
                secret,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client-final message; returns the server-final message on success.
    pub fn finish(self, client_final: &[u8]) -> Result<String, AuthError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(AuthError::Malformed("missing proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        match binding {
            // base64("n,,") and base64("y,,")
            Some("biws") | Some("eSws") => {}
            Some(_) => return Err(AuthError::ChannelBinding),
            None => return Err(AuthError::Malformed("missing channel binding")),
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(AuthError::Nonce);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| AuthError::Malformed("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(AuthError::Malformed("proof has the wrong length"));
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&self.secret.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let stored: [u8; 32] = Sha256::digest(&client_key).into();
        if !constant_time_eq(&stored, &self.secret.stored_key) {
            return Err(AuthError::BadPassword);
        }
        let server_signature = hmac(&self.secret.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Drives our server with postgres-protocol's client implementation.
    fn run(server_password: &str, client_password: &str) -> Result<(), AuthError> {
        let secret = ScramSecret::new(server_password);
        let mut client =
            ScramSha256::new(client_password.as_bytes(), ChannelBinding::unsupported());
        let (exchange, server_first) = ScramExchange::start(&secret, client.message())?;
        client
            .update(server_first.as_bytes())
            .expect("client accepts server-first");
        let server_final = exchange.finish(client.message())?;
        client
            .finish(server_final.as_bytes())
            .expect("client verifies the server signature");
        Ok(())
    }

    #[test]
    fn right_password_passes_both_ways() {
        run("s3cret", "s3cret").unwrap();
    }

    #[test]
    fn wrong_password_fails() {
        assert_eq!(run("s3cret", "guess"), Err(AuthError::BadPassword));
    }

    #[test]
    fn malformed_messages_are_rejected() {
        let secret = ScramSecret::with_salt("x", [0; 16], 16);
        assert!(ScramExchange::start(&secret, b"x,,n=,r=abc").is_err());
        assert!(ScramExchange::start(&secret, b"n,,n=,").is_err());
        assert_eq!(
            ScramExchange::start(&secret, b"p=tls-server-end-point,,n=,r=a").err(),
            Some(AuthError::ChannelBinding)
        );
        let (ex, _) = ScramExchange::start(&secret, b"n,,n=,r=abc").unwrap();
        assert!(matches!(
            ex.finish(b"c=biws,r=wrong,p=AAAA"),
            Err(AuthError::Nonce)
        ));
    }
}
