//! `GET /` on the metrics listener: a readiness page a DBA opens in a browser. One
//! self-contained HTML document (stylesheet inline, charts as inline SVG drawn here, no
//! script), reloading itself with `<meta http-equiv="refresh">`, so it works with
//! JavaScript off and without internet.
//!
//! It shows the same verdict as `/readiness` (the policy of record on one stats
//! snapshot), and from that snapshot the latency distributions and top statements.
//! Files: `history` (bounded confidence rings) -> `svg` (charts) -> `html` (the page).
//!
//! Cost: nothing on the query path. A page load is one snapshot call and one assess
//! call to the plugins (off the runtime, time-limited, like `/readiness`), then
//! rendering in O(databases × latency buckets + fingerprints) on the blocking pool:
//! about 11 KB of HTML per pool (1.1 MB at 100 pools, 45 ms in a debug build; test
//! `a_hundred_pools`).

mod history;
mod html;
mod svg;

use std::collections::HashMap;
use std::sync::Arc;

pub use history::{History, INTERVAL as HISTORY_INTERVAL};

use super::read::ProxyView;
use crate::plugins::criteria_of;
use crate::proxy::Proxy;
use pgdog_plugin_api::stats::now_unix_us;

/// Seconds between reloads.
pub const REFRESH_SECS: u32 = 5;

/// Takes a snapshot, judges it with the policy of record, records the confidences in
/// `history`, and renders the page on the blocking pool (at 100 pools the rendering is
/// tens of milliseconds of CPU, kept off the runtime's workers that serve queries).
pub async fn render(view: &ProxyView, history: Arc<History>) -> String {
    view.plugins.flush().await;
    let general = &view.config.general;
    let criteria = criteria_of(general);
    let snapshot = view.plugins.snapshot().await.map(Arc::new);
    let verdict = match &snapshot {
        Ok(s) => view
            .plugins
            .assess_snapshot(s.clone(), &criteria)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let now = now_unix_us() as f64 / 1e6;
    if let Ok(report) = &verdict {
        history.record(report, &skipped_by_database(view), now);
    }
    let min_confidence = general.mirror_min_confidence * 100.0;
    let latency_bound_ms = general.mirror_max_latency_ms as f64;
    let rendered = tokio::task::spawn_blocking(move || {
        html::render(&html::Page {
            generated_at: now,
            refresh_secs: REFRESH_SECS,
            min_confidence,
            latency_bound_ms,
            verdict: verdict.as_ref().map_err(|e| e.clone()),
            snapshot: snapshot.as_deref().ok(),
            history: &history,
        })
    })
    .await;
    rendered.unwrap_or_else(|e| {
        tracing::error!("readiness page: rendering failed: {e}");
        "<!DOCTYPE html><title>pgdog</title><p>The page could not be rendered; see pgdog's log.</p>\n"
            .to_string()
    })
}

/// Transactions each source pool did not offer to its mirror so far (`mirror_statements`),
/// by database name; pools that mirror everything are absent.
pub fn skipped_by_database(view: &ProxyView) -> HashMap<String, u64> {
    view.mirrors
        .iter()
        .map(|m| {
            let total = m.skipped.iter().map(|(_, n)| n).sum();
            (m.label.value.as_str().into_owned(), total)
        })
        .collect()
}

/// Records the verdict of record's confidences every [`HISTORY_INTERVAL`] until
/// shutdown (started when the page is first opened, so a pgdog nobody watches makes no
/// extra plugin calls).
pub async fn sample(proxy: Arc<Proxy>, history: Arc<History>) {
    let shutdown = proxy.shutdown.clone();
    let mut tick = tokio::time::interval(HISTORY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // Read afresh each time: a reload may change the criteria.
        let view = super::read::view(&proxy);
        let criteria = criteria_of(&view.config.general);
        if let Ok(report) = view.plugins.assess(&criteria).await {
            history.record(
                &report,
                &skipped_by_database(&view),
                now_unix_us() as f64 / 1e6,
            );
        }
    }
}
