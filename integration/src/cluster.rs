//! Throwaway PostgreSQL clusters from the installed binaries.
//!
//! Each [`PgCluster`] lives in its own temp dir (data, socket dir, log), listens on 127.0.0.1 on a free
//! port, and is stopped and deleted when the handle drops, also when the test panics. When the harness
//! runs as root the server runs as the `postgres` OS user.
//!
//! Every cluster has the same roles (see [`crate::template`]'s set-up): `postgres`/`postgres` and
//! `pgdog`/`pgdog` (superusers, SCRAM over TCP), `md5user`, `plainuser` and `trustuser` (password = name;
//! md5, cleartext and trust over TCP), and a database `pgdog` owned by `pgdog`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, NoTls};

use crate::{ports, reaper, sys, template};

/// Where the PostgreSQL binaries are: `$PG_BIN`, else Debian's PostgreSQL 15.
pub fn pg_bin() -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// The password the harness gave a role (see the module docs).
pub fn password_for(user: &str) -> &str {
    user
}

/// A running (or stopped) throwaway PostgreSQL cluster.
pub struct PgCluster {
    dir: Option<TempDir>,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("port", &self.port)
            .field("data", &self.data)
            .finish()
    }
}

impl PgCluster {
    /// Start a new cluster. Runs the blocking work on tokio's blocking pool, so several clusters can be
    /// started concurrently with `tokio::join!`, also from a current-thread runtime.
    pub async fn start() -> Result<PgCluster> {
        tokio::task::spawn_blocking(PgCluster::start_blocking)
            .await
            .context("cluster start task panicked")?
    }

    /// Start a new cluster, blocking the calling thread (for plain `#[test]`s).
    pub fn start_blocking() -> Result<PgCluster> {
        reaper::sweep_once();
        let bin = pg_bin();
        if !bin.join("initdb").exists() {
            bail!(
                "no PostgreSQL binaries in {} (set PG_BIN or run scripts/setup.sh)",
                bin.display()
            );
        }
        let template = template::ensure(&bin)?;

        let dir = tempfile::Builder::new()
            .prefix(reaper::CLUSTER_PREFIX)
            .tempdir_in(sys::temp_root())
            .context("creating cluster temp dir")?;
        reaper::claim(dir.path())?;
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        sys::chown_to_postgres(dir.path())?;
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        let log = dir.path().join("postgres.log");
        fs::create_dir(&sock)?;
        sys::chown_to_postgres(&sock)?;
        sys::run(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(&data),
        )
        .context("copying the template data dir")?;
        template::append(
            &data.join("postgresql.conf"),
            &format!(
                "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
                sock.display()
            ),
        )?;

        PgCluster {
            dir: Some(dir),
            data,
            sock,
            log,
            bin,
            port: 0,
        }
        .start_on_a_free_port()
    }

    /// Starts the server on a port found free. Another test process can take that port
    /// before the server binds it: on "address in use", another port is tried.
    fn start_on_a_free_port(mut self) -> Result<PgCluster> {
        let mut last_err = None;
        for _ in 0..5 {
            self.port = ports::free_port();
            template::append(
                &self.data.join("postgresql.conf"),
                &format!("port = {}\n", self.port),
            )?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(self),
                Err(err) => {
                    let log = fs::read_to_string(&self.log).unwrap_or_default();
                    let clash = log.contains("already in use") || log.contains("could not bind");
                    last_err = Some(err);
                    if !clash {
                        break;
                    }
                    let _ = fs::remove_file(&self.log);
                }
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let res = sys::run(
            sys::server_command(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .args(["-w", "-t", "60", "start"]),
        );
        match res {
            Ok(_) => Ok(()),
            Err(err) => bail!(
                "PostgreSQL on port {} did not start: {err}\n--- log tail ({}) ---\n{}",
                self.port,
                self.log.display(),
                sys::tail(&self.log, 30)
            ),
        }
    }

    /// A cluster that takes TCP connections over TLS only (`ssl = on`, `hostssl` lines
    /// alone in `pg_hba.conf`, so PostgreSQL itself refuses plaintext), with `certs`'s
    /// server certificate. Client certificates signed by `certs`'s CA are trusted, and the
    /// role `certuser` logs in with one alone (`cert`).
    pub async fn start_tls(certs: &crate::Certs) -> Result<PgCluster> {
        let cluster = PgCluster::start().await?;
        cluster.use_certificate(&certs.server, &certs.ca)?;
        cluster.execute("CREATE ROLE certuser LOGIN").await?;
        fs::write(cluster.data.join("pg_hba.conf"), TLS_ONLY_HBA)?;
        template::append(
            &cluster.data.join("postgresql.conf"),
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'\nlog_connections = on\n",
        )?;
        cluster.execute("SELECT pg_reload_conf()").await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while cluster.query_scalar::<String>("SHOW ssl").await? != "on" {
            if Instant::now() > deadline {
                bail!("ssl is not on after reload:\n{}", cluster.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(cluster)
    }

    /// Copies `pair` (as `server.crt`/`server.key`) and `ca` (as `ca.crt`) into the data
    /// directory, owned by the server's user as PostgreSQL requires of its key. A running
    /// server takes them up on `pg_reload_conf()`.
    pub fn use_certificate(&self, pair: &crate::certs::Pair, ca: &Path) -> Result<()> {
        for (from, to, mode) in [
            (&pair.cert, "server.crt", 0o644),
            (&pair.key, "server.key", 0o600),
            (&ca.to_path_buf(), "ca.crt", 0o644),
        ] {
            let path = self.data.join(to);
            fs::copy(from, &path).with_context(|| format!("copying {}", from.display()))?;
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            sys::chown_to_postgres(&path)?;
        }
        Ok(())
    }

    /// TCP port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host the cluster listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The data directory (also what identifies the cluster's processes: `pgrep -f <data_dir>`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        sys::tail(&self.log, lines)
    }

    /// A libpq key/value connection string over TCP (works for tokio-postgres, psql and pgbench).
    pub fn dsn(&self, user: &str, password: &str, db: &str) -> String {
        kv_dsn(self.host(), self.port, user, password, db)
    }

    /// A `postgres://` URL over TCP (for clients such as sqlx). Names must not need percent-encoding.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{db}",
            self.host(),
            self.port
        )
    }

    /// Connect over TCP as a harness role with its known password.
    pub async fn connect(&self, user: &str, db: &str) -> Result<Client> {
        self.connect_with(user, password_for(user), db).await
    }

    /// Connect over TCP with an explicit password.
    pub async fn connect_with(&self, user: &str, password: &str, db: &str) -> Result<Client> {
        connect_dsn(&self.dsn(user, password, db)).await
    }

    /// Connect over the Unix socket as the `postgres` superuser (trust).
    pub async fn superuser(&self, db: &str) -> Result<Client> {
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(&self.sock)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect(NoTls)
            .await
            .with_context(|| format!("superuser connect to port {} db {db}", self.port))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Run SQL (one or more statements, simple protocol) as superuser in database `postgres`.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        self.execute_in("postgres", sql).await
    }

    /// Run SQL (one or more statements, simple protocol) as superuser in database `db`.
    pub async fn execute_in(&self, db: &str, sql: &str) -> Result<()> {
        self.superuser(db)
            .await?
            .batch_execute(sql)
            .await
            .with_context(|| format!("executing {sql:?} in {db}"))
    }

    /// First column of the single row a query returns, as superuser in database `postgres`.
    pub async fn query_scalar<T: FromSqlOwned>(&self, sql: &str) -> Result<T> {
        self.query_scalar_in("postgres", sql).await
    }

    /// First column of the single row a query returns, as superuser in database `db`.
    pub async fn query_scalar_in<T: FromSqlOwned>(&self, db: &str, sql: &str) -> Result<T> {
        let row = self
            .superuser(db)
            .await?
            .query_one(sql, &[])
            .await
            .with_context(|| format!("querying {sql:?} in {db}"))?;
        row.try_get(0)
            .with_context(|| format!("reading the result of {sql:?}"))
    }

    /// Create a database owned by `pgdog`.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        self.execute(&format!("CREATE DATABASE \"{name}\" OWNER pgdog"))
            .await
    }

    /// Run SQL through psql (statement by statement, unaligned tuples-only output) as superuser over the
    /// socket, blocking. For plain tests and for statements that cannot run in a transaction.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        template::psql_stdin(&self.bin, &self.sock, self.port, db, sql)
    }

    /// Whether the postmaster is running.
    pub fn is_running(&self) -> bool {
        postmaster_pid(&self.data).is_some_and(sys::pid_alive)
    }

    /// Stop the server (`pg_ctl -m fast`), keeping the data dir and port for [`PgCluster::start_again`].
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        sys::run(
            sys::server_command(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
        )
        .map(|_| ())
    }

    /// Stop the server at once (`pg_ctl -m immediate`: no shutdown checkpoint, clients
    /// cut off, as a crash would), keeping the data dir and port for
    /// [`PgCluster::start_again`].
    pub fn stop_immediate(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        sys::run(
            sys::server_command(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "60", "stop"]),
        )
        .map(|_| ())
    }

    /// Start the server again on the same data dir and port (no-op when it is running).
    pub fn start_again(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.pg_ctl_start()
    }

    /// Appends `lines` to `postgresql.conf` (applied by [`PgCluster::restart`], or by
    /// `pg_reload_conf()` for settings a reload changes).
    pub fn configure(&self, lines: &str) -> Result<()> {
        template::append(&self.data.join("postgresql.conf"), &format!("\n{lines}\n"))
    }

    /// Stops and starts the server (settings that need a restart, such as `wal_level`).
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.pg_ctl_start()
    }

    /// A physical standby of `primary`, streaming from it: `pg_basebackup -R` (which
    /// writes `standby.signal` and `primary_conninfo`) into a temp dir of its own, started
    /// on a free port. The primary's `pg_hba.conf` gains replication over its socket.
    pub async fn start_standby(primary: &PgCluster) -> Result<PgCluster> {
        template::append(
            &primary.data.join("pg_hba.conf"),
            "local   replication  all  trust\n",
        )?;
        primary.execute("SELECT pg_reload_conf()").await?;
        let (bin, sock, port) = (primary.bin.clone(), primary.sock.clone(), primary.port);
        tokio::task::spawn_blocking(move || PgCluster::standby_blocking(bin, &sock, port))
            .await
            .context("standby start task panicked")?
    }

    fn standby_blocking(bin: PathBuf, primary_sock: &Path, primary_port: u16) -> Result<PgCluster> {
        let dir = tempfile::Builder::new()
            .prefix(reaper::CLUSTER_PREFIX)
            .tempdir_in(sys::temp_root())
            .context("creating standby temp dir")?;
        reaper::claim(dir.path())?;
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        sys::chown_to_postgres(dir.path())?;
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        let log = dir.path().join("postgres.log");
        fs::create_dir(&sock)?;
        sys::chown_to_postgres(&sock)?;
        sys::run(
            sys::server_command(&bin.join("pg_basebackup"))
                .arg("-h")
                .arg(primary_sock)
                .args(["-p", &primary_port.to_string(), "-U", "postgres"])
                .arg("-D")
                .arg(&data)
                .args(["-X", "stream", "-R", "-c", "fast"]),
        )
        .context("pg_basebackup from the primary")?;
        template::append(
            &data.join("postgresql.conf"),
            &format!(
                "\nunix_socket_directories = '{}'\nhot_standby = on\n",
                sock.display()
            ),
        )?;
        PgCluster {
            dir: Some(dir),
            data,
            sock,
            log,
            bin,
            port: 0,
        }
        .start_on_a_free_port()
    }

    /// Stop immediately and make sure no server process is left.
    fn teardown(&self) {
        let Some(pid) = postmaster_pid(&self.data) else {
            return;
        };
        if !sys::pid_alive(pid) {
            return;
        }
        let _ = sys::server_command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "20", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if sys::pid_alive(pid) {
            // SIGQUIT is PostgreSQL's immediate shutdown; the postmaster takes its children with it.
            sys::signal(pid, libc::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while sys::pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL log, port {} ({}) ---\n{}",
                self.port,
                self.log.display(),
                sys::tail(&self.log, 40)
            );
        }
        self.teardown();
        if let Some(dir) = self.dir.take() {
            if sys::keep_temp() {
                eprintln!("keeping cluster dir {}", dir.keep().display());
            }
        }
    }
}

/// `pg_hba.conf` of [`PgCluster::start_tls`]: the harness's roles over TLS only (and the
/// Unix socket the harness itself uses).
const TLS_ONLY_HBA: &str = "\
local      all  all                      trust
hostssl    all  certuser   127.0.0.1/32  cert
hostssl    all  trustuser  127.0.0.1/32  trust
hostssl    all  md5user    127.0.0.1/32  md5
hostssl    all  plainuser  127.0.0.1/32  password
hostssl    all  all        127.0.0.1/32  scram-sha-256
";

/// The postmaster's pid from `postmaster.pid`, if the file exists.
pub(crate) fn postmaster_pid(data: &Path) -> Option<i32> {
    fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A libpq key/value connection string, values quoted.
pub fn kv_dsn(host: &str, port: u16, user: &str, password: &str, db: &str) -> String {
    format!(
        "host={host} port={port} user={} password={} dbname={}",
        quote(user),
        quote(password),
        quote(db)
    )
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Connect with tokio-postgres (no TLS) and drive the connection on a spawned task.
pub async fn connect_dsn(dsn: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(dsn, NoTls)
        .await
        .with_context(|| format!("connecting with {}", redact(dsn)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn redact(dsn: &str) -> String {
    dsn.split(' ')
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
