//! The server side of SCRAM-SHA-256 (RFC 5802/7677), as PostgreSQL runs it: channel
//! binding (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`, RFC 5929) offered over TLS
//! only, the user name in the SCRAM message ignored in favour of the startup packet's.
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
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
const ITERATIONS: u32 = 4096;

type HmacSha256 = Hmac<Sha256>;

pub(super) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Stored key material for one password (what PostgreSQL keeps in `pg_authid`).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

/// What a client proved it has in a SCRAM exchange: enough to log in to a server that
/// holds the same verifier, without the password (SCRAM pass-through).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ScramKeys {
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(..)")
    }
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
        let keys = salted_keys(password, &salt, iterations);
        ScramSecret {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(keys.client_key).into(),
            server_key: keys.server_key,
        }
    }

    /// A verifier as PostgreSQL stores it in `pg_authid.rolpassword`:
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 parts). `None`
    /// for anything else (a plaintext password, an MD5 hash).
    pub fn from_verifier(verifier: &str) -> Option<ScramSecret> {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let key = |b64: &str| -> Option<[u8; 32]> { B64.decode(b64).ok()?.try_into().ok() };
        Some(ScramSecret {
            salt: B64.decode(salt).ok().filter(|s| !s.is_empty())?,
            iterations: iterations.parse().ok().filter(|&i| i > 0)?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// Whether `text` is shaped like a verifier (a password that was meant as one but does
    /// not parse is an error, not a plaintext password).
    pub fn looks_like_verifier(text: &str) -> bool {
        text.starts_with("SCRAM-SHA-256$")
    }
}

/// The keys of `password` with `salt` and `iterations` (PBKDF2: milliseconds of CPU).
pub fn salted_keys(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    ScramKeys {
        client_key: hmac(&salted, b"Client Key"),
        server_key: hmac(&salted, b"Server Key"),
    }
}

/// One exchange, after the client's first message.
pub struct ScramExchange<'a> {
    secret: &'a ScramSecret,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// What the client-final message's `c=` must carry, base64-encoded: the GS2 header,
    /// then the channel binding data when the client binds.
    binding: String,
}

/// Whether the server offered channel binding, and with what data.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// The `tls-server-end-point` data of the connection (`None`: not offered).
    pub end_point: Option<&'a [u8]>,
    /// The client chose `SCRAM-SHA-256-PLUS`.
    pub plus: bool,
}

impl<'a> ScramExchange<'a> {
    /// Takes the SASLInitialResponse data of `SCRAM-SHA-256` when no channel binding was
    /// offered; returns the exchange and the server-first message.
    pub fn start(
        secret: &'a ScramSecret,
        client_first: &[u8],
    ) -> Result<(Self, String), AuthError> {
        let offer = Offer {
            end_point: None,
            plus: false,
        };
        Self::start_with(secret, client_first, offer)
    }

    /// [`ScramExchange::start`] after `offer`.
    pub fn start_with(
        secret: &'a ScramSecret,
        client_first: &[u8],
        offer: Offer<'_>,
    ) -> Result<(Self, String), AuthError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let (header, bare, binding) = gs2_header(text, offer)?;
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
            B64.encode(&secret.salt),
            secret.iterations
        );
        Ok((
            ScramExchange {
                secret,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
                binding: B64.encode([header.as_bytes(), binding].concat()),
            },
            server_first,
        ))
    }

    /// Checks the client-final message; returns the server-final message on success.
    pub fn finish(self, client_final: &[u8]) -> Result<String, AuthError> {
        self.finish_with_keys(client_final)
            .map(|(server_final, _)| server_final)
    }

    /// [`ScramExchange::finish`], with the keys the client proved it has.
    pub fn finish_with_keys(self, client_final: &[u8]) -> Result<(String, ScramKeys), AuthError> {
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
            Some(c) if c == self.binding => {}
            Some(_) if self.binding.len() > 4 => return Err(AuthError::BindingMismatch),
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
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature)) {
            *k = p ^ s;
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !constant_time_eq(&stored, &self.secret.stored_key) {
            return Err(AuthError::BadPassword);
        }
        let server_signature = hmac(&self.secret.server_key, auth_message.as_bytes());
        let keys = ScramKeys {
            client_key,
            server_key: self.secret.server_key,
        };
        Ok((format!("v={}", B64.encode(server_signature)), keys))
    }
}

/// Splits the client-first message into its GS2 header, the bare message and the channel
/// binding data the client binds to, checked against what the server offered:
/// - `n,,`: the client does not bind (the plain mechanism);
/// - `y,,`: the client could bind but thinks the server cannot, which is a downgrade when
///   the server did offer;
/// - `p=tls-server-end-point,,`: the client binds (`SCRAM-SHA-256-PLUS` only).
fn gs2_header<'t, 'o>(
    text: &'t str,
    offer: Offer<'o>,
) -> Result<(&'t str, &'t str, &'o [u8]), AuthError> {
    const BIND: &str = "p=tls-server-end-point,,";
    let (header, binding) = if text.starts_with("n,,") {
        ("n,,", &[][..])
    } else if text.starts_with("y,,") {
        if offer.end_point.is_some() {
            return Err(AuthError::Downgrade);
        }
        ("y,,", &[][..])
    } else if text.starts_with(BIND) {
        match offer.end_point {
            Some(data) if offer.plus => (BIND, data),
            Some(_) => return Err(AuthError::Malformed("channel binding with SCRAM-SHA-256")),
            None => return Err(AuthError::ChannelBinding),
        }
    } else if text.starts_with("p=") {
        return Err(AuthError::ChannelBinding);
    } else {
        return Err(AuthError::Malformed("bad GS2 header"));
    };
    if offer.plus && header != BIND {
        return Err(AuthError::Malformed(
            "SCRAM-SHA-256-PLUS without channel binding",
        ));
    }
    Ok((header, &text[header.len()..], binding))
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

    /// Drives our server, offering channel binding with `server_data`, with a client that
    /// binds to `client` and picks the mechanism `plus` says.
    fn run_bound(server_data: &[u8], client: ChannelBinding, plus: bool) -> Result<(), AuthError> {
        let secret = ScramSecret::new("s3cret");
        let mut c = ScramSha256::new(b"s3cret", client);
        let offer = Offer {
            end_point: Some(server_data),
            plus,
        };
        let (exchange, server_first) = ScramExchange::start_with(&secret, c.message(), offer)?;
        c.update(server_first.as_bytes())
            .expect("client accepts server-first");
        let server_final = exchange.finish(c.message())?;
        c.finish(server_final.as_bytes())
            .expect("client verifies the server");
        Ok(())
    }

    #[test]
    fn channel_binding_passes_with_the_connections_data_only() {
        let data = b"hash of the server certificate".to_vec();
        run_bound(
            &data,
            ChannelBinding::tls_server_end_point(data.clone()),
            true,
        )
        .unwrap();
        // A man in the middle: the client saw another certificate.
        let seen = ChannelBinding::tls_server_end_point(b"hash of another one".to_vec());
        assert_eq!(
            run_bound(&data, seen, true),
            Err(AuthError::BindingMismatch)
        );
        // A client that binds must say so with the PLUS mechanism, and the other way round.
        let bound = ChannelBinding::tls_server_end_point(data.clone());
        assert!(run_bound(&data, bound, false).is_err());
        assert!(run_bound(&data, ChannelBinding::unsupported(), true).is_err());
        // Plain SCRAM over TLS by a client that cannot bind is fine...
        run_bound(&data, ChannelBinding::unsupported(), false).unwrap();
        // ...but not by one that could and believes the server cannot: a downgrade.
        assert_eq!(
            run_bound(&data, ChannelBinding::unrequested(), false),
            Err(AuthError::Downgrade)
        );
    }
}
