//! Short pgdog configs for tests.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use pgdog_integration::{ConfigBuilder, PgCluster};
//! let (primary, mirror) = tokio::try_join!(PgCluster::start(), PgCluster::start())?;
//! let pgdog = ConfigBuilder::new()
//!     .set("pool_size", 5)
//!     .pool("primary", &primary, "pgdog")
//!     .pool("mirror", &mirror, "pgdog")
//!     .pool_set("mirror", "mirror_of", "primary")
//!     .pool_set("mirror", "mirror_exposure", 1.0)
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! `[general]` gets `host = "127.0.0.1"` and free `port`, `admin_port` and `metrics_port`; each pool gets
//! the cluster's host and port and `user = "pgdog"`, `password = "pgdog"`. Every value can be overridden
//! with [`ConfigBuilder::set`] / [`ConfigBuilder::pool_set`], raw lines can be added to `[general]` or a
//! pool, and [`ConfigBuilder::raw`] appends exact TOML at the end.

use anyhow::Result;
use toml::Value;

use crate::cluster::PgCluster;
use crate::pgdog::Pgdog;
use crate::ports::free_port;

/// Keys in insertion order with TOML values, plus raw lines.
#[derive(Debug, Clone, Default)]
struct Section {
    entries: Vec<(String, Value)>,
    raw: Vec<String>,
}

impl Section {
    fn set(&mut self, key: &str, value: Value) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_string(), value)),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    fn render(&self, out: &mut String) {
        for (k, v) in &self.entries {
            out.push_str(&format!("{k} = {v}\n"));
        }
        for line in &self.raw {
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// Builds a pgdog TOML config; see the module docs.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    general: Section,
    pools: Vec<(String, Section)>,
    raw: Vec<String>,
    /// Whether the listen ports were picked by us (and may be re-picked on a port clash).
    auto_ports: bool,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder::new()
    }
}

impl ConfigBuilder {
    /// `[general]` with host 127.0.0.1 and free proxy, admin and metrics ports; no pools.
    pub fn new() -> ConfigBuilder {
        let mut general = Section::default();
        general.set("host", Value::from("127.0.0.1"));
        let mut builder = ConfigBuilder {
            general,
            pools: Vec::new(),
            raw: Vec::new(),
            auto_ports: true,
        };
        builder.pick_ports();
        builder
    }

    fn pick_ports(&mut self) {
        for key in ["port", "admin_port", "metrics_port"] {
            self.general.set(key, Value::from(i64::from(free_port())));
        }
    }

    /// Set a `[general]` key (replacing the builder's value, if any).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        if matches!(key, "port" | "admin_port" | "metrics_port") {
            self.auto_ports = false;
        }
        self.general.set(key, value.into());
        self
    }

    /// Remove a `[general]` key the builder set (e.g. to test a default).
    pub fn unset(mut self, key: &str) -> Self {
        if matches!(key, "port" | "admin_port" | "metrics_port") {
            self.auto_ports = false;
        }
        self.general.remove(key);
        self
    }

    /// Add a raw line (e.g. `auth_type = "md5"`) to `[general]`. Don't repeat a key the builder sets.
    pub fn general(mut self, line: &str) -> Self {
        self.general.raw.push(line.to_string());
        self
    }

    /// Add a `[[pools]]` entry for `database` on `cluster`, logging in as pgdog/pgdog.
    pub fn pool(self, name: &str, cluster: &PgCluster, database: &str) -> Self {
        self.pool_at(name, cluster.host(), cluster.port(), database)
    }

    /// Add a `[[pools]]` entry for a server given by host and port (e.g. one that is down).
    pub fn pool_at(mut self, name: &str, host: &str, port: u16, database: &str) -> Self {
        let mut pool = Section::default();
        pool.set("name", Value::from(name));
        pool.set("database", Value::from(database));
        pool.set("host", Value::from(host));
        pool.set("port", Value::from(i64::from(port)));
        pool.set("user", Value::from("pgdog"));
        pool.set("password", Value::from("pgdog"));
        self.pools.push((name.to_string(), pool));
        self
    }

    /// Add a pool on `cluster` that mirrors pool `mirror_of`.
    pub fn mirror(self, name: &str, cluster: &PgCluster, database: &str, mirror_of: &str) -> Self {
        self.pool(name, cluster, database)
            .pool_set(name, "mirror_of", mirror_of)
    }

    /// Set a key of the pool named `pool`. Panics if there is no such pool (a bug in the test).
    pub fn pool_set(mut self, pool: &str, key: &str, value: impl Into<Value>) -> Self {
        self.pool_mut(pool).set(key, value.into());
        self
    }

    /// Add a raw line to the pool named `pool`.
    pub fn pool_line(mut self, pool: &str, line: &str) -> Self {
        self.pool_mut(pool).raw.push(line.to_string());
        self
    }

    fn pool_mut(&mut self, pool: &str) -> &mut Section {
        match self.pools.iter_mut().find(|(n, _)| n == pool) {
            Some((_, section)) => section,
            None => panic!("ConfigBuilder: no pool named {pool:?}"),
        }
    }

    /// Append exact TOML text at the end of the config.
    pub fn raw(mut self, text: &str) -> Self {
        self.raw.push(text.to_string());
        self
    }

    /// The proxy port in the config (None if unset).
    pub fn port(&self) -> Option<u16> {
        self.port_of("port")
    }

    /// The admin port in the config (None if unset).
    pub fn admin_port(&self) -> Option<u16> {
        self.port_of("admin_port")
    }

    /// The metrics port in the config (None if unset).
    pub fn metrics_port(&self) -> Option<u16> {
        self.port_of("metrics_port")
    }

    fn port_of(&self, key: &str) -> Option<u16> {
        self.general
            .get(key)?
            .as_integer()
            .and_then(|p| u16::try_from(p).ok())
    }

    /// The TOML text.
    pub fn build(&self) -> String {
        let mut out = String::from("[general]\n");
        self.general.render(&mut out);
        for (_, pool) in &self.pools {
            out.push_str("\n[[pools]]\n");
            pool.render(&mut out);
        }
        for raw in &self.raw {
            out.push('\n');
            out.push_str(raw);
            out.push('\n');
        }
        out
    }

    /// Start pgdog with this config. If start-up fails because a listen port was taken meanwhile (by
    /// another test process) and the ports were picked by the builder, pick new ones and retry.
    pub async fn start(mut self) -> Result<Pgdog> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Pgdog::start(&self.build()).await {
                Err(err) if self.auto_ports && attempt < 4 && is_port_clash(&err) => {
                    self.pick_ports();
                }
                result => return result,
            }
        }
    }

    /// [`ConfigBuilder::start`], blocking.
    pub fn start_blocking(mut self) -> Result<Pgdog> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Pgdog::start_blocking(&self.build()) {
                Err(err) if self.auto_ports && attempt < 4 && is_port_clash(&err) => {
                    self.pick_ports();
                }
                result => return result,
            }
        }
    }
}

fn is_port_clash(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}").to_lowercase();
    text.contains("address already in use") || text.contains("addrinuse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parseable_toml_with_overrides() {
        let builder = ConfigBuilder::new()
            .set("pool_size", 7)
            .set("auth_type", "md5")
            .general("mirror_metrics_enabled = true")
            .pool_at("primary", "127.0.0.1", 5555, "db1")
            .pool_at("mirror", "127.0.0.1", 5556, "db1")
            .pool_set("mirror", "mirror_of", "primary")
            .pool_set("mirror", "mirror_exposure", 0.5)
            .pool_set("mirror", "user", "md5user");
        let text = builder.build();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let general = table["general"].as_table().unwrap();
        assert_eq!(general["pool_size"].as_integer(), Some(7));
        assert_eq!(general["auth_type"].as_str(), Some("md5"));
        assert_eq!(general["mirror_metrics_enabled"].as_bool(), Some(true));
        let pools = table["pools"].as_array().unwrap();
        assert_eq!(pools.len(), 2);
        let mirror = pools[1].as_table().unwrap();
        assert_eq!(mirror["mirror_of"].as_str(), Some("primary"));
        assert_eq!(mirror["mirror_exposure"].as_float(), Some(0.5));
        assert_eq!(mirror["user"].as_str(), Some("md5user"));
        assert_eq!(mirror["port"].as_integer(), Some(5556));
        let listen = crate::net::Listen::from_config(&text).unwrap();
        assert_eq!(Some(listen.port), builder.port());
        assert_eq!(Some(listen.admin_port), builder.admin_port());
        assert_eq!(Some(listen.metrics_port), builder.metrics_port());
    }

    #[test]
    fn listen_defaults() {
        let listen = crate::net::Listen::from_config("[general]\n").unwrap();
        assert_eq!(
            (listen.port, listen.admin_port, listen.metrics_port),
            (6432, 6433, 9090)
        );
        assert_eq!(listen.host, "127.0.0.1");
    }
}
