//! The client side of SCRAM-SHA-256, for the proxy's own logins to servers: with the pool's
//! password, or with the keys a client proved in its own exchange (SCRAM pass-through: no
//! password needed, only a server that holds the same verifier). Channel binding
//! (`tls-server-end-point`) when the connection is TLS and the server offers it.

use super::scram::{hmac, salted_keys, ScramKeys};
use super::AuthError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What the proxy logs in with.
#[derive(Clone)]
pub enum Credential {
    Password(String),
    Keys(ScramKeys),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(..)"),
            Credential::Keys(_) => f.write_str("Keys(..)"),
        }
    }
}

/// The channel binding the client announces.
#[derive(Debug, Clone)]
pub enum Binding {
    /// Not on TLS: `n,,`.
    None,
    /// On TLS, but the server did not offer to bind: `y,,`.
    Unrequested,
    /// Binding to the server certificate's `tls-server-end-point` data.
    EndPoint(Vec<u8>),
}

pub struct ScramClient {
    credential: Credential,
    header: &'static str,
    binding: Vec<u8>,
    client_first_bare: String,
    nonce: String,
    /// The server signature expected in server-final, once the proof was sent.
    expected: Option<[u8; 32]>,
}

impl ScramClient {
    /// The client and its client-first message.
    pub fn new(credential: Credential, binding: Binding) -> (ScramClient, String) {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        let nonce = B64.encode(raw);
        let (header, binding) = match binding {
            Binding::None => ("n,,", Vec::new()),
            Binding::Unrequested => ("y,,", Vec::new()),
            Binding::EndPoint(data) => ("p=tls-server-end-point,,", data),
        };
        // The user name is the startup packet's, as PostgreSQL takes it.
        let client_first_bare = format!("n=,r={nonce}");
        let first = format!("{header}{client_first_bare}");
        let client = ScramClient {
            credential,
            header,
            binding,
            client_first_bare,
            nonce,
            expected: None,
        };
        (client, first)
    }

    /// Takes server-first; returns client-final. With a password this runs PBKDF2
    /// (milliseconds): call it off the async runtime's threads.
    pub fn server_first(&mut self, message: &[u8]) -> Result<String, AuthError> {
        let text = std::str::from_utf8(message).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = Some(v);
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = Some(v);
            }
        }
        let nonce = nonce.ok_or(AuthError::Malformed("missing nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(AuthError::Nonce);
        }
        let keys = match &self.credential {
            Credential::Keys(keys) => *keys,
            Credential::Password(password) => {
                let salt = salt
                    .and_then(|s| B64.decode(s).ok())
                    .ok_or(AuthError::Malformed("missing salt"))?;
                let iterations = iterations
                    .and_then(|i| i.parse().ok())
                    .filter(|&i: &u32| i > 0)
                    .ok_or(AuthError::Malformed("bad iteration count"))?;
                salted_keys(password, &salt, iterations)
            }
        };
        let channel = B64.encode([self.header.as_bytes(), &self.binding].concat());
        let without_proof = format!("c={channel},r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let stored: [u8; 32] = Sha256::digest(keys.client_key).into();
        let signature = hmac(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.expected = Some(hmac(&keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks server-final: the server proved it holds the verifier too.
    pub fn server_final(&self, message: &[u8]) -> Result<(), AuthError> {
        let text = std::str::from_utf8(message).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v.split(',').next()?).ok())
            .ok_or(AuthError::Malformed("missing server signature"))?;
        match self.expected {
            Some(expected) if super::md5::constant_time_eq(&signature, &expected) => Ok(()),
            _ => Err(AuthError::BadPassword),
        }
    }

    /// The SASL mechanism matching the binding.
    pub fn mechanism(&self) -> &'static str {
        if self.binding.is_empty() {
            super::scram::MECHANISM
        } else {
            super::scram::MECHANISM_PLUS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::{Offer, ScramExchange, ScramSecret};

    /// Our client against our server, with `credential` for `secret`.
    fn login(secret: &ScramSecret, credential: Credential) -> Result<ScramKeys, AuthError> {
        let (mut client, first) = ScramClient::new(credential, Binding::None);
        let offer = Offer {
            end_point: None,
            plus: false,
        };
        let (exchange, server_first) = ScramExchange::start_with(secret, first.as_bytes(), offer)?;
        let client_final = client.server_first(server_first.as_bytes())?;
        let (server_final, keys) = exchange.finish_with_keys(client_final.as_bytes())?;
        client.server_final(server_final.as_bytes())?;
        Ok(keys)
    }

    #[test]
    fn the_keys_a_client_proved_log_in_like_the_password() {
        let secret = ScramSecret::new("s3cret");
        let keys = login(&secret, Credential::Password("s3cret".into())).unwrap();
        // Pass-through: the proved keys alone log in again.
        assert_eq!(login(&secret, Credential::Keys(keys)).unwrap(), keys);
        assert_eq!(
            login(&secret, Credential::Password("guess".into())).err(),
            Some(AuthError::BadPassword)
        );
        let mut wrong = keys;
        wrong.client_key[0] ^= 1;
        assert!(login(&secret, Credential::Keys(wrong)).is_err());
    }

    #[test]
    fn a_server_that_does_not_hold_the_verifier_is_caught() {
        let secret = ScramSecret::new("s3cret");
        let (mut client, first) =
            ScramClient::new(Credential::Password("s3cret".into()), Binding::None);
        let (exchange, server_first) = ScramExchange::start(&secret, first.as_bytes()).unwrap();
        let client_final = client.server_first(server_first.as_bytes()).unwrap();
        exchange.finish(client_final.as_bytes()).unwrap();
        assert_eq!(client.server_final(b"v=AAAA"), Err(AuthError::BadPassword));
    }

    #[test]
    fn verifiers_parse_as_postgresql_writes_them() {
        let keys = salted_keys("pgdog", &[7; 16], 4096);
        let stored: [u8; 32] = Sha256::digest(keys.client_key).into();
        let verifier = format!(
            "SCRAM-SHA-256$4096:{}${}:{}",
            B64.encode([7u8; 16]),
            B64.encode(stored),
            B64.encode(keys.server_key)
        );
        let secret = ScramSecret::from_verifier(&verifier).expect("a verifier");
        assert!(secret == ScramSecret::with_salt("pgdog", [7; 16], 4096));
        assert!(login(&secret, Credential::Password("pgdog".into())).is_ok());
        for bad in [
            "pgdog",
            "md5abc",
            "SCRAM-SHA-256$x:AA==$AA==:AA==",
            "SCRAM-SHA-256$4096:$a:b",
        ] {
            assert!(ScramSecret::from_verifier(bad).is_none(), "{bad}");
        }
    }
}
