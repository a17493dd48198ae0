//! MD5 password hashing as PostgreSQL defines it: `"md5" + md5(md5(password + user) + salt)`.

use md5::{Digest, Md5};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a client must answer to an MD5 challenge with `salt`.
pub fn expected_response(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&Md5::digest(format!("{password}{user}").as_bytes()));
    let mut outer = Md5::new();
    outer.update(inner.as_bytes());
    outer.update(salt);
    format!("md5{}", hex(&outer.finalize()))
}

/// Constant-time comparison of a client's answer.
pub fn verify(user: &str, password: &str, salt: [u8; 4], answer: &str) -> bool {
    let expected = expected_response(user, password, salt);
    constant_time_eq(expected.as_bytes(), answer.as_bytes())
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres_protocol_client() {
        let salt = [1, 2, 3, 4];
        let client = postgres_protocol::authentication::md5_hash(b"alice", b"secret", salt);
        assert_eq!(expected_response("alice", "secret", salt), client);
        assert!(verify("alice", "secret", salt, &client));
        assert!(!verify("alice", "wrong", salt, &client));
    }
}
