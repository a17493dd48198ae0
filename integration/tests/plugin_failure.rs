//! A readiness plugin that panics, end to end: the real binary, the `test-plugin`
//! fixture configured to panic in `assess`. Readiness answers the error (`/readiness`
//! 503 `UNKNOWN`), `SHOW PLUGINS` says `failed`, and `RELOAD` re-creates the plugin with
//! fresh state. Needs `integration/plugin-fixtures/build.sh`.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{admin_lines, admin_rows};
use pgdog_integration::{http_get, pgdog_binary, ConfigBuilder, PgCluster};

fn test_plugin() -> std::path::PathBuf {
    let binary = pgdog_binary().unwrap();
    let target = binary.parent().unwrap().parent().unwrap();
    let path = target.join("plugin-fixtures/debug/libpgdog_fixture_test_plugin.so");
    assert!(
        path.is_file(),
        "{} missing: run integration/plugin-fixtures/build.sh",
        path.display()
    );
    path
}

#[tokio::test]
async fn reload_re_creates_a_readiness_plugin_that_panicked() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let mut pgdog = ConfigBuilder::new()
        .set("admin_password", "adminpw")
        .set("readiness_plugin", "judge")
        .pool("app", &cluster, "pgdog")
        .raw(&format!(
            "[[plugins]]\nname = \"judge\"\npath = \"{}\"\n\
             config = {{ panic_in = \"assess\", capabilities = [\"readiness\"] }}\n",
            test_plugin().display()
        ))
        .start()
        .await?;
    let port = pgdog.metrics_port();
    pgdog.wait_for_port(port, Duration::from_secs(10)).await?;
    let console = pgdog.connect_admin("admin", "adminpw", "pgdog").await?;
    let status = |rows: &[common::AdminRow]| {
        rows.iter()
            .find(|r| r.get("name").cloned().flatten().as_deref() == Some("judge"))
            .and_then(|r| r.get("status").cloned().flatten())
            .unwrap_or_default()
    };

    let err = admin_lines(&console, "SHOW MIRROR READINESS")
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("panicked"), "{err:?}");
    let readiness = http_get(pgdog.host(), port, "/readiness").await?;
    assert_eq!(readiness.status, 503);
    assert!(readiness.body.contains("\"UNKNOWN\""), "{}", readiness.body);
    assert!(readiness.body.contains("disabled"), "{}", readiness.body);
    let metrics = http_get(pgdog.host(), port, "/metrics").await?;
    assert!(
        !metrics.body.contains("pgdog_mirror_ready{"),
        "{}",
        metrics.body
    );
    let plugins = admin_rows(&console, "SHOW PLUGINS").await?;
    assert!(status(&plugins).starts_with("failed"), "{plugins:?}");

    let reload = admin_lines(&console, "RELOAD").await?.join("\n");
    assert!(
        reload.contains("plugin \"judge\" had failed: being re-created"),
        "{reload}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let plugins = admin_rows(&console, "SHOW PLUGINS").await?;
        if status(&plugins) == "ok" {
            break;
        }
        if Instant::now() > deadline {
            bail!("not re-created: {plugins:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The fresh instance is called (configured to, it panics again) rather than refused.
    let err = admin_lines(&console, "SHOW MIRROR READINESS")
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("panicked in assess"), "{err:?}");
    Ok(())
}
