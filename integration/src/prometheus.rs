//! A real Prometheus (Debian's `prometheus` binary, installed by `scripts/setup.sh`) in a
//! temp dir on a free port, scraping given targets every second; killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{free_port, http_get};

pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `targets` (`host:port`), with the recording rules of `rules` when given.
    pub fn start(targets: &[String], rules: Option<&Path>) -> Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        let rule_files = rules
            .map(|r| format!("rule_files: ['{}']\n", r.display()))
            .unwrap_or_default();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 {rule_files}\
                 scrape_configs:\n  - job_name: pgdog\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("running `prometheus` (installed by scripts/setup.sh)")?;
        Ok(Prometheus { child, port, dir })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The value of an instant query with a single result, if there is one yet.
    pub async fn query(&self, promql: &str) -> Result<Option<String>> {
        let path = format!("/api/v1/query?query={}", urlencode(promql));
        let r = match http_get("127.0.0.1", self.port, &path).await {
            Ok(r) => r,
            Err(_) => return Ok(None), // not listening yet
        };
        if r.status != 200 {
            return Ok(None);
        }
        let json: serde_json::Value = serde_json::from_str(&r.body)?;
        if json["status"] != "success" {
            bail!("query failed: {}", r.body);
        }
        let result = json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match result.as_slice() {
            [] => Ok(None),
            [one] => Ok(one["value"][1].as_str().map(str::to_string)),
            _ => bail!("several series for {promql}: {}", r.body),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
