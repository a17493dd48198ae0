//! All pools of one configuration, and the rule that maps a client's `database` to one of
//! them. Immutable: a `RELOAD` builds a new table from the old one ([`Pools::build`]),
//! keeping the pools whose settings did not change.

use super::pool::{Pool, PoolSettings, UserAuth};
use super::ServerAddr;
use crate::config::Config;
use crate::tls::{Connector, TlsError};
use std::collections::HashMap;
use std::sync::Arc;
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

/// What `RELOAD` did to one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChange {
    Added(String),
    /// Address, credentials, size or timeouts changed: new clients get a new pool, clients
    /// already connected keep theirs until they leave.
    Replaced(String),
    /// Gone from the config: new clients are refused, connected ones keep their session.
    Removed(String),
}

/// What one `[[pools]]` entry asks for.
struct Wanted {
    name: String,
    addr: ServerAddr,
    settings: PoolSettings,
    auth: UserAuth,
}

/// Address, settings and user of each `[[pools]]` entry, in config order (TLS files read).
fn wanted(config: &Config) -> Result<Vec<Wanted>, TlsError> {
    let g = &config.general;
    config
        .pools
        .iter()
        .map(|p| {
            let tls = Connector::build(&p.name, &p.host, &p.server_tls(g))?;
            let addr = ServerAddr {
                host: p.host.clone(),
                port: p.port,
                database: p.server_database().to_string(),
                user: p.user.clone(),
            };
            let settings = PoolSettings {
                size: p.pool_size.unwrap_or(g.pool_size),
                connect_timeout: Duration::from_millis(g.connect_timeout_ms),
                checkout_timeout: Duration::from_millis(g.checkout_timeout_ms),
                tls: Arc::new(tls),
            };
            Ok(Wanted {
                name: p.name.clone(),
                addr,
                settings,
                auth: UserAuth::from_config(p.password.as_deref()),
            })
        })
        .collect()
}

impl Pools {
    fn new(pools: Vec<Pool>) -> Pools {
        let mut by_name = HashMap::new();
        let mut by_database: HashMap<String, Vec<String>> = HashMap::new();
        for pool in pools {
            by_database
                .entry(pool.addr().database.clone())
                .or_default()
                .push(pool.name().to_string());
            by_name.insert(pool.name().to_string(), pool);
        }
        Pools {
            by_name,
            by_database,
        }
    }

    pub fn from_config(config: &Config) -> Result<Pools, TlsError> {
        Ok(Pools::build(config, None)?.0)
    }

    pub fn get(&self, name: &str) -> Option<Pool> {
        self.by_name.get(name).cloned()
    }

    /// The pool named `database`; else the one pool whose server database is `database`.
    pub fn route(&self, database: &str) -> Result<Pool, RouteError> {
        if let Some(pool) = self.by_name.get(database) {
            return Ok(pool.clone());
        }
        match self.by_database.get(database).map(Vec::as_slice) {
            Some([only]) => Ok(self.by_name[only].clone()),
            _ => Err(RouteError::NoSuchDatabase(database.to_string())),
        }
    }

    /// Every pool, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = Pool> {
        let mut pools: Vec<Pool> = self.by_name.values().cloned().collect();
        pools.sort_by(|a, b| a.name().cmp(b.name()));
        pools.into_iter()
    }

    /// The pools of `config`, and what changed from `previous`: unchanged pools are kept
    /// as they are, changed ones replaced by a new pool that inherits `DISABLE`/`PAUSE`,
    /// new ones added, missing ones removed. The old pools are left as they are (see
    /// [`Pools::retire`]).
    pub fn build(
        config: &Config,
        previous: Option<&Pools>,
    ) -> Result<(Pools, Vec<PoolChange>), TlsError> {
        let empty = HashMap::new();
        let old = previous.map_or(&empty, |p| &p.by_name);
        let mut changes = Vec::new();
        let mut pools = Vec::with_capacity(config.pools.len());
        for Wanted {
            name,
            addr,
            settings,
            auth,
        } in wanted(config)?
        {
            match old.get(&name) {
                Some(pool)
                    if *pool.addr() == addr
                        && *pool.settings() == settings
                        && *pool.auth() == auth =>
                {
                    pools.push(pool.clone());
                }
                Some(pool) => {
                    let new = Pool::new(&name, addr, settings, auth);
                    new.set_disabled(pool.is_disabled());
                    new.set_paused(pool.is_paused());
                    pools.push(new);
                    changes.push(PoolChange::Replaced(name));
                }
                None => {
                    pools.push(Pool::new(&name, addr, settings, auth));
                    if previous.is_some() {
                        changes.push(PoolChange::Added(name));
                    }
                }
            }
        }
        let mut removed: Vec<&Pool> = old
            .values()
            .filter(|p| config.pool(p.name()).is_none())
            .collect();
        removed.sort_by(|a, b| a.name().cmp(b.name()));
        for pool in removed {
            changes.push(PoolChange::Removed(pool.name().to_string()));
        }
        Ok((Pools::new(pools), changes))
    }

    /// `self` replaced `previous`: the idle connections of the pools it no longer has
    /// (replaced or removed) are closed; their connected clients keep theirs.
    pub fn retire(&self, previous: &Pools) {
        for old in previous.by_name.values() {
            if !self.get(old.name()).is_some_and(|p| p.ptr_eq(old)) {
                old.close_idle();
            }
        }
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
        let pools = Pools::from_config(&config).unwrap();
        assert_eq!(pools.route("primary").unwrap().name(), "primary");
        assert_eq!(pools.route("test_primary").unwrap().name(), "primary");
        assert_eq!(pools.route("a").unwrap().name(), "a");
        assert_eq!(
            pools.route("shared").unwrap_err(),
            RouteError::NoSuchDatabase("shared".into())
        );
        assert!(pools.route("nope").is_err());
    }

    fn parse(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn reload_keeps_unchanged_replaces_changed_adds_and_removes() {
        let before = parse(
            r#"
            [general]
            auth_type = "trust"
            [[pools]]
            name = "same"
            [[pools]]
            name = "moved"
            port = 5432
            [[pools]]
            name = "gone"
            "#,
        );
        let pools = Pools::from_config(&before).unwrap();
        let same = pools.get("same").unwrap();
        let moved = pools.get("moved").unwrap();
        moved.set_disabled(true);
        let after = parse(
            r#"
            [general]
            auth_type = "trust"
            [[pools]]
            name = "same"
            [[pools]]
            name = "moved"
            port = 5433
            [[pools]]
            name = "new"
            "#,
        );
        let (reloaded, changes) = Pools::build(&after, Some(&pools)).unwrap();
        reloaded.retire(&pools);
        let pools = reloaded;
        assert_eq!(
            changes,
            vec![
                PoolChange::Replaced("moved".into()),
                PoolChange::Added("new".into()),
                PoolChange::Removed("gone".into()),
            ]
        );
        assert!(pools.get("same").unwrap().ptr_eq(&same));
        let replaced = pools.get("moved").unwrap();
        assert!(!replaced.ptr_eq(&moved));
        assert_eq!(replaced.addr().port, 5433);
        assert!(replaced.is_disabled(), "DISABLE survives a reload");
        assert!(pools.route("gone").is_err());
        assert_eq!(Pools::build(&after, Some(&pools)).unwrap().1, vec![]);
    }
}
