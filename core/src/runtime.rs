//! The running configuration as one immutable snapshot: the config, the pools, the mirror
//! targets and the TLS certificates, built together by one function at start-up and on
//! `RELOAD`, and swapped in one atomic store.
//!
//! A client session takes one snapshot at login and keeps it: the pool it routes to and
//! the mirror target of that pool always come from the same generation, however RELOADs
//! race with logins. What a snapshot shares with the one before it (pools whose settings
//! did not change, the queue depth and drops of a mirror target that did not change) is
//! the same object in both, so connected clients and new ones count in one place.

use crate::backend::{PoolChange, Pools};
use crate::config::Config;
use crate::mirror::{self, MirrorMap};
use crate::tls::{Acceptor, TlsError};
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex};

/// One generation of the running configuration.
pub struct Runtime {
    /// Counts RELOADs: 0 at start-up.
    pub generation: u64,
    pub config: Arc<Config>,
    pub pools: Pools,
    /// Source pool name -> where its traffic is mirrored.
    pub mirrors: MirrorMap,
    /// TLS towards clients (the proxy's and the admin console's).
    pub client_tls: Arc<Acceptor>,
}

/// What a new generation changed.
#[derive(Debug, Default)]
pub struct Changes {
    pub pools: Vec<PoolChange>,
    /// One line per mirror target change.
    pub mirrors: Vec<String>,
}

impl Runtime {
    /// The runtime of `config`, and what changed from `previous`; certificate files that
    /// cannot be used are an error. `previous` is not touched: see [`Runtime::take_over`].
    pub fn build(
        config: Config,
        previous: Option<&Runtime>,
    ) -> Result<(Runtime, Changes), TlsError> {
        let client_tls = Arc::new(Acceptor::build(&config.general)?);
        let (pools, pool_changes) = Pools::build(&config, previous.map(|r| &r.pools))?;
        let (mirrors, mirror_changes) = mirror::targets(
            &config,
            |name| pools.get(name),
            previous.map(|r| &r.mirrors),
        );
        let runtime = Runtime {
            generation: previous.map_or(0, |r| r.generation + 1),
            config: Arc::new(config),
            pools,
            mirrors,
            client_tls,
        };
        let changes = Changes {
            pools: pool_changes,
            mirrors: mirror_changes,
        };
        Ok((runtime, changes))
    }

    /// `self` replaces `previous`: sessions of kept mirror targets take the new exposure,
    /// and the pools `self` no longer has close their idle connections.
    fn take_over(&self, previous: &Runtime) {
        for target in self.mirrors.values() {
            target.apply_exposure();
            // A gate RELOAD made starts reading positions now (a kept one runs already).
            if let Some(gate) = &target.sync {
                gate.start();
            }
        }
        self.pools.retire(&previous.pools);
    }
}

/// The current [`Runtime`], replaced as a whole by `RELOAD`.
pub struct Live {
    current: ArcSwap<Runtime>,
    /// One reload at a time: each builds on the one before.
    reloading: Mutex<()>,
}

impl Live {
    pub fn new(config: Config) -> Result<Live, TlsError> {
        let (runtime, _) = Runtime::build(config, None)?;
        Ok(Live {
            current: ArcSwap::from_pointee(runtime),
            reloading: Mutex::new(()),
        })
    }

    /// The current generation (a snapshot: a later `RELOAD` does not change it).
    pub fn load(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// The running config.
    pub fn config(&self) -> Arc<Config> {
        self.current.load().config.clone()
    }

    /// Makes `config` (already validated) the running configuration. When a certificate
    /// file cannot be used, nothing changes and the error says why.
    pub fn reload(&self, config: Config) -> Result<Changes, TlsError> {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.load();
        let (runtime, changes) = Runtime::build(config, Some(&previous))?;
        runtime.take_over(&previous);
        self.current.store(Arc::new(runtime));
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    fn config(primary_port: u16, mirror: &str) -> Config {
        let text = format!(
            r#"
            [general]
            auth_type = "trust"
            [[pools]]
            name = "app"
            port = {primary_port}
            mirror_of = "{mirror}"
            [[pools]]
            name = "new_a"
            host = "a.internal"
            [[pools]]
            name = "new_b"
            host = "b.internal"
            "#
        );
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    /// Generation A mirrors `app` (on port 5001) to `new_a`, generation B (port 5002) to
    /// `new_b`. Logins take a snapshot each while RELOADs swap A and B: every login sees a
    /// pool and a mirror target of one generation.
    #[test]
    fn a_reload_racing_logins_never_pairs_a_pool_with_another_generations_target() {
        let live = Arc::new(Live::new(config(5001, "new_a")).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let reloads = Arc::new(AtomicU64::new(0));
        let reloader = std::thread::spawn({
            let (live, stop, reloads) = (live.clone(), stop.clone(), reloads.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let (port, mirror) = if reloads.load(Ordering::Relaxed).is_multiple_of(2) {
                        (5002, "new_b")
                    } else {
                        (5001, "new_a")
                    };
                    live.reload(config(port, mirror)).unwrap();
                    reloads.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Each login thread runs until it saw both generations with reloads racing it (on
        // a loaded machine the reloader may get little time), or for at most 20 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let logins: Vec<_> = (0..4)
            .map(|_| {
                let (live, reloads) = (live.clone(), reloads.clone());
                std::thread::spawn(move || {
                    let mut seen = [0u64; 2];
                    let mut logins = 0u64;
                    while logins < 20_000
                        || (seen.contains(&0) || reloads.load(Ordering::Relaxed) < 20)
                            && std::time::Instant::now() < deadline
                    {
                        let runtime = live.load();
                        let pool = runtime.pools.route("app").unwrap();
                        let target = &runtime.mirrors["app"];
                        let expected = if pool.addr().port == 5001 {
                            "new_a"
                        } else {
                            "new_b"
                        };
                        assert_eq!(
                            target.pool.name(),
                            expected,
                            "generation {}",
                            runtime.generation
                        );
                        seen[usize::from(pool.addr().port == 5002)] += 1;
                        logins += 1;
                    }
                    seen
                })
            })
            .collect();
        let seen: Vec<[u64; 2]> = logins.into_iter().map(|t| t.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        reloader.join().unwrap();
        let reloads = reloads.load(Ordering::Relaxed);
        assert!(reloads >= 20, "the reloads raced the logins ({reloads})");
        assert!(
            seen.iter().all(|s| s[0] > 0 && s[1] > 0),
            "every login thread saw both generations: {seen:?}"
        );
    }

    #[test]
    fn a_reload_keeps_what_did_not_change() {
        let live = Live::new(config(5001, "new_a")).unwrap();
        let before = live.load();
        let changes = live.reload(config(5001, "new_a")).unwrap();
        assert!(
            changes.pools.is_empty() && changes.mirrors.is_empty(),
            "{changes:?}"
        );
        let after = live.load();
        assert_eq!(after.generation, 1);
        assert!(after
            .pools
            .get("app")
            .unwrap()
            .ptr_eq(&before.pools.get("app").unwrap()));
        let changes = live.reload(config(5002, "new_a")).unwrap();
        assert_eq!(changes.pools, vec![PoolChange::Replaced("app".into())]);
    }
}
