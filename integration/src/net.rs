//! Where pgdog listens and whether it does: the listen addresses a config asks for, and probes of a
//! port (open at all, and held by a given process).

use std::fs;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

/// Ports and host a config asks for, with pgdog's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub host: String,
    pub port: u16,
    pub admin_port: u16,
    pub metrics_port: u16,
}

impl Listen {
    /// Read `[general]` host/port/admin_port/metrics_port from config text.
    pub fn from_config(config: &str) -> Result<Listen> {
        let table: toml::Table = toml::from_str(config).context("config is not valid TOML")?;
        let general = table.get("general").and_then(|g| g.as_table());
        let int = |key: &str, default: u16| -> Result<u16> {
            match general.and_then(|g| g.get(key)) {
                None => Ok(default),
                Some(v) => v
                    .as_integer()
                    .and_then(|i| u16::try_from(i).ok())
                    .ok_or_else(|| anyhow!("[general] {key} is not a port: {v}")),
            }
        };
        // One address or an array of them: clients use the first.
        let host = match general.and_then(|g| g.get("host")) {
            Some(toml::Value::Array(hosts)) => hosts.first().and_then(|h| h.as_str()),
            Some(h) => h.as_str(),
            None => None,
        }
        .unwrap_or("127.0.0.1");
        // A wildcard listen address is reached through loopback.
        let host = match host {
            "0.0.0.0" | "*" | "" => "127.0.0.1",
            "::" => "::1",
            h => h,
        };
        Ok(Listen {
            host: host.to_string(),
            port: int("port", 6432)?,
            admin_port: int("admin_port", 6433)?,
            metrics_port: int("metrics_port", 9090)?,
        })
    }
}

/// Whether a TCP connect to host:port succeeds right now.
pub fn port_open(host: &str, port: u16) -> bool {
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => return false,
    };
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
}

/// Whether process `pid` holds a listening TCP socket on `port`, from /proc (`None` when /proc cannot
/// tell). Checking the owner, not just that the port answers, keeps a test from mistaking another test's
/// proxy that happens to have grabbed the same port for its own.
pub fn listens_on(pid: i32, port: u16) -> Option<bool> {
    let mut inodes = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue; // not LISTEN
            }
            let local_port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if !readable {
        return None;
    }
    if inodes.is_empty() {
        return Some(false);
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
            .unwrap_or(false)
    }))
}
