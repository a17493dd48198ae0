//! Free TCP ports for clusters and proxies.
//!
//! Tests run in parallel, in one process (`cargo test`) or in many (`cargo nextest`). Asking the kernel
//! for port 0 hands out ports from the ephemeral range, which outgoing connections also draw from, so a
//! port found free can be taken by some client's socket before the server binds it. We therefore pick
//! random ports *below* the ephemeral range, check that they bind on 127.0.0.1, and never hand the same
//! port out twice in one process. Across processes the random choice makes clashes rare, and the
//! cluster start retries on "address in use" (as does [`crate::ConfigBuilder::start`]).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Lowest port we pick from.
const LOW: u16 = 20_000;

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out before.
pub fn free_port() -> u16 {
    let high = ephemeral_low().clamp(LOW + 1_000, 32_768);
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let used = guard.get_or_insert_with(HashSet::new);
    let mut rng = seed();
    for _ in 0..1_000 {
        rng = xorshift(rng);
        let port = LOW + (rng % u64::from(high - LOW)) as u16;
        if used.contains(&port) || !bindable(port) {
            continue;
        }
        used.insert(port);
        return port;
    }
    // Extremely unlikely: fall back to whatever the kernel gives.
    loop {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind any TCP port on 127.0.0.1");
        if used.insert(port) {
            return port;
        }
    }
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The start of the kernel's ephemeral port range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // Mix in the pid so processes started in the same instant pick differently.
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len());
        for p in ports {
            assert!(p >= LOW);
            assert!(bindable(p));
        }
    }
}
