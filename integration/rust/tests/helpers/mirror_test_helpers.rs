//! Helpers of the user's mirror-metrics suite (spec: `integration/rust/tests/helpers/`).
//!
//! The spec starts pgdog with `cargo run` on fixed ports against Docker databases. Here there
//! is no Docker, so each instance gets its own throwaway clusters (a primary with database
//! `test_primary`, a mirror with `test_mirror`) and free ports, and the spec's config is
//! completed with what only Docker would have provided: listen ports, server addresses and
//! credentials, and the pools the spec's configs name but leave out. Nothing the spec's
//! configs say is overridden.
#![allow(dead_code)]

use pgdog_integration::{free_port, PgCluster, Pgdog};
use std::error::Error;
use std::process::Command;
use tokio::net::TcpListener;
use toml::{Table, Value};

pub struct PgDogInstance {
    process: Pgdog,
    admin_port: u16,
    metrics_port: u16,
    port: u16,
    _primary: PgCluster,
    _mirror: PgCluster,
    _tarpit: Option<tokio::task::JoinHandle<()>>,
}

impl PgDogInstance {
    pub async fn admin_command(&self, cmd: &str) -> Result<String, Box<dyn Error>> {
        // Execute admin command via psql
        let output = Command::new("psql")
            .args([
                "-h",
                "localhost",
                "-p",
                &self.admin_port.to_string(),
                "-U",
                "admin",
                "-d",
                "pgdog",
                "-c",
                cmd,
            ])
            .output()?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    }

    /// The spec's `stop_pool`: the admin console's `DISABLE`, which refuses new server
    /// connections for the pool (a mirror pool then fails fast with connection errors).
    pub async fn stop_pool(&self, pool: &str) {
        self.admin_command(&format!("DISABLE {pool}"))
            .await
            .unwrap_or_else(|e| panic!("DISABLE {pool}: {e}"));
    }

    /// Where the spec writes `postgres://pgdog@localhost:6432/<db>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://pgdog@localhost:{}/{database}", self.port)
    }

    /// Where the spec writes `http://localhost:9090/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://localhost:{}/metrics", self.metrics_port)
    }

    pub async fn shutdown(mut self) {
        self.process.kill();
        if let Some(t) = self._tarpit.take() {
            t.abort();
        }
    }
}

/// A server that accepts connections and never answers: the spec's `slow_mirror`.
async fn tarpit() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("tarpit bind");
    let port = listener.local_addr().expect("tarpit addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

pub async fn start_pgdog_with_config(config: &str) -> PgDogInstance {
    let (primary, mirror) =
        tokio::try_join!(PgCluster::start(), PgCluster::start()).expect("clusters");
    primary
        .create_database("test_primary")
        .await
        .expect("test_primary");
    mirror
        .create_database("test_mirror")
        .await
        .expect("test_mirror");

    let mut table: Table = toml::from_str(config).expect("the test's config is TOML");
    let (port, admin_port, metrics_port) = (free_port(), free_port(), free_port());
    let general = table
        .entry("general")
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .expect("[general] is a table");
    general.insert("host".into(), Value::from("127.0.0.1"));
    general.insert("port".into(), Value::from(i64::from(port)));
    general.insert("admin_port".into(), Value::from(i64::from(admin_port)));
    general.insert("metrics_port".into(), Value::from(i64::from(metrics_port)));
    // The spec's clients connect without a password (`postgres://pgdog@...`).
    general
        .entry("auth_type")
        .or_insert_with(|| Value::from("trust"));

    let mut pools: Vec<Table> = table
        .remove("pools")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_table().cloned())
        .collect();
    if pools.is_empty() {
        // test_readiness_calculation_accuracy names no pools but connects to test_primary
        // and stops "mirror".
        pools.push(toml::from_str("name = \"primary\"\ndatabase = \"test_primary\"\nmirror_of = \"mirror\"\nmirror_exposure = 1.0").unwrap());
        pools.push(toml::from_str("name = \"mirror\"\ndatabase = \"test_mirror\"").unwrap());
    }
    // Pools named by `mirror_of` but not defined (test_buffer_overflow_tracking's
    // "slow_mirror") are added; "slow_mirror" is a server that never answers.
    let mut tarpit_task = None;
    let names: Vec<String> = pools
        .iter()
        .filter_map(|p| p.get("name")?.as_str().map(str::to_string))
        .collect();
    let missing: Vec<String> = pools
        .iter()
        .filter_map(|p| p.get("mirror_of")?.as_str().map(str::to_string))
        .filter(|target| !names.contains(target))
        .collect();
    for target in missing {
        let mut pool = Table::new();
        pool.insert("name".into(), Value::from(target.as_str()));
        pool.insert("database".into(), Value::from("test_mirror"));
        if target == "slow_mirror" {
            let (port, task) = tarpit().await;
            pool.insert("port".into(), Value::from(i64::from(port)));
            pool.insert("host".into(), Value::from("127.0.0.1"));
            tarpit_task = Some(task);
        }
        pools.push(pool);
    }
    for pool in &mut pools {
        let database = pool
            .get("database")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let cluster = if database == "test_primary" {
            &primary
        } else {
            &mirror
        };
        if !pool.contains_key("host") {
            pool.insert("host".into(), Value::from(cluster.host()));
            pool.insert("port".into(), Value::from(i64::from(cluster.port())));
        }
        pool.entry("user").or_insert_with(|| Value::from("pgdog"));
        pool.entry("password")
            .or_insert_with(|| Value::from("pgdog"));
    }
    table.insert(
        "pools".into(),
        Value::Array(pools.into_iter().map(Value::Table).collect()),
    );

    let process = Pgdog::start(&toml::to_string(&table).expect("config renders"))
        .await
        .expect("pgdog starts");
    PgDogInstance {
        process,
        admin_port,
        metrics_port,
        port,
        _primary: primary,
        _mirror: mirror,
        _tarpit: tarpit_task,
    }
}
