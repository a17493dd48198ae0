//! The real `pgdog` binary as a child process.
//!
//! [`Pgdog::start`] writes a config into a temp dir, spawns `pgdog --config <path>` with stdout and
//! stderr going to a log file there, and returns once the proxy port accepts TCP connections (or fails
//! with the log tail when the process exits or does not come up in time). The process is killed when the
//! handle drops; on a test panic its log tail is printed first.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;
use tokio_postgres::Client;

use crate::binary::pgdog_binary;
use crate::cluster::{connect_dsn, kv_dsn};
use crate::net::{listens_on, port_open, Listen};
use crate::{reaper, sys};

/// How long start-up may take before we give up (override with `PGDOG_START_TIMEOUT_SECS`).
fn start_timeout() -> Duration {
    let secs = std::env::var("PGDOG_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// How the process is started, beyond its config: extra environment variables (say
/// `RUST_LOG`, or systemd's `NOTIFY_SOCKET`) and a lower open-files limit (`ulimit -n`).
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub env: Vec<(String, String)>,
    pub max_open_files: Option<u64>,
}

impl Launch {
    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the open-files limit (soft and hard) of the process.
    pub fn max_open_files(mut self, n: u64) -> Launch {
        self.max_open_files = Some(n);
        self
    }
}

/// A running `pgdog` process.
pub struct Pgdog {
    child: Option<Child>,
    launch: Launch,
    dir: Option<TempDir>,
    config_path: PathBuf,
    log_path: PathBuf,
    listen: Listen,
    binary: PathBuf,
}

impl std::fmt::Debug for Pgdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pgdog")
            .field("pid", &self.pid())
            .field("listen", &self.listen)
            .field("config", &self.config_path)
            .finish()
    }
}

impl Pgdog {
    /// Start pgdog with this config text and wait until its proxy port accepts connections.
    pub async fn start(config_toml: &str) -> Result<Pgdog> {
        Pgdog::start_with_binary(&pgdog_binary()?, config_toml).await
    }

    /// [`Pgdog::start`] with another binary (an older build, or a stand-in for testing the harness).
    pub async fn start_with_binary(binary: &Path, config_toml: &str) -> Result<Pgdog> {
        Pgdog::start_launched(binary, config_toml, Launch::default()).await
    }

    /// [`Pgdog::start`], with the environment and limits of `launch`.
    pub async fn start_with(config_toml: &str, launch: Launch) -> Result<Pgdog> {
        Pgdog::start_launched(&pgdog_binary()?, config_toml, launch).await
    }

    async fn start_launched(binary: &Path, config_toml: &str, launch: Launch) -> Result<Pgdog> {
        let mut pgdog = Pgdog::spawn(binary, config_toml, launch)?;
        let deadline = Instant::now() + start_timeout();
        loop {
            match pgdog.poll_ready()? {
                true => return Ok(pgdog),
                false if Instant::now() >= deadline => return Err(pgdog.not_ready()),
                false => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }

    /// [`Pgdog::start`], blocking the calling thread (for plain `#[test]`s).
    pub fn start_blocking(config_toml: &str) -> Result<Pgdog> {
        let mut pgdog = Pgdog::spawn(&pgdog_binary()?, config_toml, Launch::default())?;
        let deadline = Instant::now() + start_timeout();
        loop {
            match pgdog.poll_ready()? {
                true => return Ok(pgdog),
                false if Instant::now() >= deadline => return Err(pgdog.not_ready()),
                false => std::thread::sleep(Duration::from_millis(25)),
            }
        }
    }

    /// Start pgdog with a config it must refuse: returns its exit status and its output (stderr, then
    /// stdout, since a logger may write to either). Fails if it is still running after the start-up
    /// timeout (it is killed then).
    pub fn start_expect_failure(config_toml: &str) -> Result<(ExitStatus, String)> {
        Pgdog::start_expect_failure_with_binary(&pgdog_binary()?, config_toml)
    }

    /// [`Pgdog::start_expect_failure`] with another binary.
    pub fn start_expect_failure_with_binary(
        binary: &Path,
        config_toml: &str,
    ) -> Result<(ExitStatus, String)> {
        let (status, output) = run_to_exit(binary, config_toml, &[])?;
        if status.success() {
            bail!("pgdog exited 0 although start-up should have failed; output:\n{output}");
        }
        Ok((status, output))
    }

    /// Run `pgdog --config <file> --check`: its exit status and output (stderr, then stdout).
    pub fn check_config(config_toml: &str) -> Result<(ExitStatus, String)> {
        run_to_exit(&pgdog_binary()?, config_toml, &["--check"])
    }

    fn spawn(binary: &Path, config_toml: &str, launch: Launch) -> Result<Pgdog> {
        reaper::sweep_once();
        let listen = Listen::from_config(config_toml)?;
        let binary = binary.to_path_buf();
        let dir = proxy_dir()?;
        let config_path = dir.path().join("pgdog.toml");
        let log_path = dir.path().join("pgdog.log");
        fs::write(&config_path, config_toml)?;
        let mut pgdog = Pgdog {
            child: None,
            launch,
            dir: Some(dir),
            config_path,
            log_path,
            listen,
            binary,
        };
        pgdog.spawn_child()?;
        Ok(pgdog)
    }

    /// Spawn the process for our config; its output is appended to the log file.
    fn spawn_child(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let dir = self.dir.as_ref().expect("dir lives as long as the handle");
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(dir.path())
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(n) = self.launch.max_open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        fs::write(dir.path().join(reaper::CHILD_FILE), child.id().to_string())?;
        self.child = Some(child);
        Ok(())
    }

    /// Ok(true) once the proxy port accepts; an error if the process has exited.
    fn poll_ready(&mut self) -> Result<bool> {
        if let Some(status) = self.try_wait()? {
            bail!(
                "pgdog exited during start-up with {status}\n--- pgdog log ({}) ---\n{}",
                self.log_path.display(),
                sys::tail(&self.log_path, 40)
            );
        }
        let pid = self.pid().expect("child is running") as i32;
        Ok(match listens_on(pid, self.listen.port) {
            Some(ours) => ours,
            None => port_open(&self.listen.host, self.listen.port),
        })
    }

    fn not_ready(&self) -> anyhow::Error {
        anyhow!(
            "pgdog did not accept connections on {}:{} within {:?}\n--- pgdog log ({}) ---\n{}",
            self.listen.host,
            self.listen.port,
            start_timeout(),
            self.log_path.display(),
            sys::tail(&self.log_path, 40)
        )
    }

    /// Start pgdog again with the same config file, ports and log file (after `sigterm`/`kill`; a
    /// running process is killed first), and wait until the proxy port accepts connections.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn_child()?;
        let deadline = Instant::now() + start_timeout();
        loop {
            match self.poll_ready()? {
                true => return Ok(()),
                false if Instant::now() >= deadline => return Err(self.not_ready()),
                false => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }

    /// Proxy port.
    pub fn port(&self) -> u16 {
        self.listen.port
    }

    /// Admin port.
    pub fn admin_port(&self) -> u16 {
        self.listen.admin_port
    }

    /// Prometheus metrics port.
    pub fn metrics_port(&self) -> u16 {
        self.listen.metrics_port
    }

    /// The host clients connect to.
    pub fn host(&self) -> &str {
        &self.listen.host
    }

    /// `http://host:metrics_port/metrics`.
    pub fn metrics_url(&self) -> String {
        format!(
            "http://{}:{}/metrics",
            self.listen.host, self.listen.metrics_port
        )
    }

    /// The config file pgdog was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The binary that was started.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Everything pgdog has logged so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The process id, while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory in KiB (`VmRSS` from /proc), while the process runs.
    pub fn rss_kb(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Open file descriptors of the process (from /proc), while it runs.
    pub fn fd_count(&self) -> Option<usize> {
        Some(
            fs::read_dir(format!("/proc/{}/fd", self.pid()?))
                .ok()?
                .count(),
        )
    }

    /// A libpq key/value connection string to the proxy port.
    pub fn dsn(&self, user: &str, password: &str, db: &str) -> String {
        kv_dsn(&self.listen.host, self.listen.port, user, password, db)
    }

    /// A libpq key/value connection string to the admin port.
    pub fn admin_dsn(&self, user: &str, password: &str, db: &str) -> String {
        kv_dsn(
            &self.listen.host,
            self.listen.admin_port,
            user,
            password,
            db,
        )
    }

    /// A `postgres://` URL to the proxy port (names must not need percent-encoding).
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{db}",
            self.listen.host, self.listen.port
        )
    }

    /// Connect a tokio-postgres client through the proxy.
    pub async fn connect(&self, user: &str, password: &str, db: &str) -> Result<Client> {
        connect_dsn(&self.dsn(user, password, db)).await
    }

    /// Connect a tokio-postgres client to the admin port.
    pub async fn connect_admin(&self, user: &str, password: &str, db: &str) -> Result<Client> {
        connect_dsn(&self.admin_dsn(user, password, db)).await
    }

    /// Wait until some port of this process (admin, metrics) accepts TCP connections.
    pub async fn wait_for_port(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                bail!("pgdog exited ({status}) while waiting for port {port}");
            }
            let pid = self.pid().expect("child is running") as i32;
            if listens_on(pid, port).unwrap_or_else(|| port_open(&self.listen.host, port)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("port {port} not open after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("pgdog was already reaped"),
        }
    }

    /// Send SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Send SIGINT.
    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    /// Send any signal.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(child) = self.child.as_ref() {
            sys::signal(child.id() as i32, sig);
        }
    }

    /// Wait for the process to exit; an error if it still runs after `timeout` (it is not killed).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("pgdog still running {timeout:?} after being asked to exit");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Pgdog::wait_exit`], blocking.
    pub fn wait_exit_blocking(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("pgdog still running {timeout:?} after being asked to exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill (SIGKILL) and reap the process. Idempotent.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Pgdog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- pgdog log ({}) ---\n{}",
                self.log_path.display(),
                sys::tail(&self.log_path, 60)
            );
        }
        self.kill();
        if let Some(dir) = self.dir.take() {
            if sys::keep_temp() {
                eprintln!("keeping pgdog dir {}", dir.keep().display());
            }
        }
    }
}

fn proxy_dir() -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(reaper::PROXY_PREFIX)
        .tempdir_in(sys::temp_root())
        .context("creating pgdog temp dir")?;
    reaper::claim(dir.path())?;
    Ok(dir)
}

/// Run pgdog with a config until it exits by itself (killed after the start-up timeout).
fn run_to_exit(
    binary: &Path,
    config_toml: &str,
    extra_args: &[&str],
) -> Result<(ExitStatus, String)> {
    reaper::sweep_once();
    let dir = proxy_dir()?;
    let config_path = dir.path().join("pgdog.toml");
    fs::write(&config_path, config_toml)?;
    let stdout_path = dir.path().join("stdout.log");
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&config_path)
        .args(extra_args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path)?)
        .stderr(File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    fs::write(dir.path().join(reaper::CHILD_FILE), child.id().to_string())?;
    let deadline = Instant::now() + start_timeout();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "pgdog was still running after {:?}; output:\n{}\n{}",
                start_timeout(),
                sys::tail(&stderr_path, 40),
                sys::tail(&stdout_path, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let output = if stdout.is_empty() {
        stderr
    } else {
        format!("{stderr}{stdout}")
    };
    Ok((status, output))
}
