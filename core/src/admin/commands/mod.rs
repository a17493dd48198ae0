//! What each admin command does, one file per family: [`mirror`] (readiness and mirror
//! statistics), [`pools`] (pool, client and server lists), [`control`] (disable, kill,
//! pause, shutdown), [`show`] (config, plugins, version, help), [`reload`].

mod control;
mod mirror;
mod pools;
mod reload;
mod show;

use super::output::Output;
use super::{AdminError, Command};
use crate::backend::Pool;
use crate::proxy::Proxy;
use std::sync::Arc;

pub(super) async fn execute(proxy: &Arc<Proxy>, command: Command) -> Result<Output, AdminError> {
    match command {
        Command::ShowMirrorReadiness { database } => {
            mirror::readiness(proxy, database.as_deref()).await
        }
        Command::ShowMirrorStats => mirror::stats(proxy).await,
        Command::ShowMirrorQueries { database } => {
            mirror::queries(proxy, database.as_deref()).await
        }
        Command::ResetMirrorStats => mirror::reset(proxy).await,
        Command::ShowPools => Ok(pools::pools(proxy)),
        Command::ShowStats => Ok(pools::stats(proxy)),
        Command::ShowPreparedStatements => Ok(pools::prepared_statements(proxy)),
        Command::ShowClients => Ok(pools::clients(proxy)),
        Command::ShowServers => Ok(pools::servers(proxy)),
        Command::ShowConfig => show::config(proxy),
        Command::ShowPlugins => Ok(show::plugins(proxy)),
        Command::ShowVersion => Ok(show::version()),
        Command::Help => Ok(show::help()),
        Command::Disable { pool } => control::set_disabled(proxy, &pool, true),
        Command::Enable { pool } => control::set_disabled(proxy, &pool, false),
        Command::Kill { pool } => control::kill(proxy, &pool),
        Command::Pause { pool } => control::set_paused(proxy, pool.as_deref(), true),
        Command::Resume { pool } => control::set_paused(proxy, pool.as_deref(), false),
        Command::Reload => reload::reload(proxy),
        Command::Shutdown => Ok(control::shutdown(proxy)),
    }
}

/// The pool named `name`, or an error listing the pools.
fn pool(proxy: &Proxy, name: &str) -> Result<Pool, AdminError> {
    let runtime = proxy.runtime();
    runtime
        .pools
        .get(name)
        .ok_or_else(|| AdminError::NoSuchPool {
            name: name.to_string(),
            known: runtime
                .pools
                .iter()
                .map(|p| p.name().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
