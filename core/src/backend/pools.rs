//! All pools, and the rule that maps a client's `database` to one of them.

use super::pool::{Pool, PoolSettings};
use super::ServerAddr;
use crate::config::Config;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("database \"{0}\" does not exist")]
    NoSuchDatabase(String),
}

pub struct Pools {
    by_name: HashMap<String, Pool>,
    /// Server database name -> pool names with it, for routing by database.
    by_database: HashMap<String, Vec<String>>,
}

impl Pools {
    pub fn from_config(config: &Config) -> Pools {
        let g = &config.general;
        let mut by_name = HashMap::new();
        let mut by_database: HashMap<String, Vec<String>> = HashMap::new();
        for p in &config.pools {
            let addr = ServerAddr {
                host: p.host.clone(),
                port: p.port,
                database: p.server_database().to_string(),
                user: p.user.clone(),
                password: p.password.clone(),
            };
            let settings = PoolSettings {
                size: p.pool_size.unwrap_or(g.pool_size),
                connect_timeout: Duration::from_millis(g.connect_timeout_ms),
                checkout_timeout: Duration::from_millis(g.checkout_timeout_ms),
            };
            by_name.insert(p.name.clone(), Pool::new(&p.name, addr, settings));
            by_database
                .entry(p.server_database().to_string())
                .or_default()
                .push(p.name.clone());
        }
        Pools {
            by_name,
            by_database,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Pool> {
        self.by_name.get(name)
    }

    /// The pool named `database`; else the one pool whose server database is `database`.
    pub fn route(&self, database: &str) -> Result<&Pool, RouteError> {
        if let Some(pool) = self.by_name.get(database) {
            return Ok(pool);
        }
        match self.by_database.get(database).map(Vec::as_slice) {
            Some([only]) => Ok(&self.by_name[only]),
            _ => Err(RouteError::NoSuchDatabase(database.to_string())),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        let mut pools: Vec<&Pool> = self.by_name.values().collect();
        pools.sort_by(|a, b| a.name().cmp(b.name()));
        pools.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_name_then_unique_database() {
        let config = Config::parse(
            r#"
            [general]
            auth_type = "trust"
            [[pools]]
            name = "primary"
            database = "test_primary"
            [[pools]]
            name = "a"
            database = "shared"
            [[pools]]
            name = "b"
            database = "shared"
            "#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let pools = Pools::from_config(&config);
        assert_eq!(pools.route("primary").unwrap().name(), "primary");
        assert_eq!(pools.route("test_primary").unwrap().name(), "primary");
        assert_eq!(pools.route("a").unwrap().name(), "a");
        assert_eq!(
            pools.route("shared").unwrap_err(),
            RouteError::NoSuchDatabase("shared".into())
        );
        assert!(pools.route("nope").is_err());
    }
}
