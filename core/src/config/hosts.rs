//! `host` and `metrics_host`: one listen address or several (`host = ["0.0.0.0", "::"]`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Listen addresses: IP literals, host names (every address they resolve to), or `*`
/// (every IPv4 and IPv6 address). Written as one string or an array of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts(pub Vec<String>);

impl Hosts {
    pub fn one(host: &str) -> Hosts {
        Hosts(vec![host.to_string()])
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The first address, for messages that name one.
    pub fn first(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or("")
    }
}

impl std::fmt::Display for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl<'de> Deserialize<'de> for Hosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "an address or an array of addresses")]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(host) => Hosts(vec![host]),
            OneOrMany::Many(hosts) => Hosts(hosts),
        })
    }
}

impl Serialize for Hosts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize)]
    struct T {
        host: Hosts,
    }

    #[test]
    fn one_or_many() {
        let t: T = toml::from_str("host = \"::1\"").unwrap();
        assert_eq!(t.host, Hosts::one("::1"));
        assert_eq!(toml::to_string(&t).unwrap().trim(), "host = \"::1\"");
        let t: T = toml::from_str("host = [\"0.0.0.0\", \"::\"]").unwrap();
        assert_eq!(t.host.as_slice(), ["0.0.0.0", "::"]);
        assert_eq!(t.host.to_string(), "0.0.0.0, ::");
        assert!(toml::to_string(&t)
            .unwrap()
            .contains("[\"0.0.0.0\", \"::\"]"));
        assert!(toml::from_str::<T>("host = 3").is_err());
    }
}
