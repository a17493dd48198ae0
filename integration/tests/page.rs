//! The readiness page (issue 22) in a real browser: Debian's `chromium`, headless, loads
//! `GET /` from the real binary mirroring real clusters, and the DOM it builds must hold
//! the verdict `SHOW MIRROR READINESS` gives and the statement that blocks it. A
//! screenshot is saved in the test's temp directory.
//!
//! `scripts/setup.sh` installs chromium; without it the test says so and passes (CI
//! always has it).

mod common;

use anyhow::{bail, Context, Result};
use common::{admin_lines, MirrorEnv};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "s3cret-admin";

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs headless chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`), with
/// its profile in `dir`, under a time limit; returns its standard output.
fn browse(chromium: &Path, dir: &Path, url: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("timeout")
        .arg("60")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .env("HOME", dir)
        .output()
        .context("running chromium")?;
    if !out.status.success() {
        bail!(
            "chromium {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A table the mirror lacks (schema drift: NOT READY whatever the rate), queried through
/// pgdog beside statements both sides answer alike; then the page in chromium.
#[tokio::test]
async fn the_page_in_a_real_browser_shows_the_verdict_and_the_statement() -> Result<()> {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED: chromium not found on PATH; scripts/setup.sh installs it (apt-get install chromium)"
        );
        return Ok(());
    };
    let env = MirrorEnv::start("", |b| {
        b.set("admin_password", ADMIN_PASSWORD)
            .set("mirror_min_runtime_hours", 0.0)
            .set("mirror_compare", true)
            .set("mirror_queue", 2000)
    })
    .await?
    .with_admin()
    .await?;
    env.primary
        .execute_in(
            "pgdog",
            "CREATE TABLE only_here (id int, v text); INSERT INTO only_here VALUES (1, 'a')",
        )
        .await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    let n = 40;
    for i in 0..n {
        if i % 4 == 0 {
            client
                .simple_query(&format!("SELECT v FROM only_here WHERE id = {i}"))
                .await?;
        } else {
            client.simple_query(&format!("SELECT {i} AS n")).await?;
        }
    }
    let console = env
        .pgdog
        .connect_admin("admin", ADMIN_PASSWORD, "pgdog")
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let text = admin_lines(&console, "SHOW MIRROR READINESS")
            .await?
            .join("\n");
        if text.contains(&format!("primary Total Requests: {n}\n")) {
            break text;
        }
        if Instant::now() > deadline {
            bail!("the mirror did not account for {n} requests:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let status = report
        .lines()
        .find_map(|l| l.strip_prefix("primary Status: "))
        .context("no status for primary")?
        .to_string();
    assert_eq!(status, "NOT READY", "{report}");

    let dir = tempfile::Builder::new().prefix("pgdog-page-").tempdir()?;
    let url = format!("http://{}:{}/", env.pgdog.host(), env.pgdog.metrics_port());
    let (chromium, path) = (chromium.clone(), dir.path().to_path_buf());
    let (dom, shot) = tokio::task::spawn_blocking(move || -> Result<(String, PathBuf)> {
        let dom = browse(&chromium, &path, &url, &["--dump-dom"])?;
        let shot = path.join("readiness.png");
        browse(
            &chromium,
            &path,
            &url,
            &[&format!("--screenshot={}", shot.display())],
        )?;
        Ok((dom, shot))
    })
    .await??;

    // The browser's DOM: the database's section, its verdict equal to the console's,
    // the blocking statement's normalised text, and the charts.
    let section = dom
        .split("<section class=\"db\" data-database=\"primary\">")
        .nth(1)
        .with_context(|| format!("no section for primary in the DOM:\n{dom}"))?;
    assert!(section.starts_with("<h2>primary</h2>"), "{section}");
    assert!(
        section.contains(&format!("<p class=\"status\">{status}</p>")),
        "{section}"
    );
    assert!(section.contains("only_here"), "{section}");
    assert!(section.contains("<code class=\"query\">"), "{section}");
    // Since when the statement fails on the mirror (its first error, a moment ago).
    let since = section
        .split("<td class=\"since\">")
        .nth(1)
        .and_then(|s| s.split("</td>").next())
        .with_context(|| format!("no since cell:\n{section}"))?;
    assert!(
        since.contains(" UTC (") && since.ends_with(" s ago)"),
        "{since}"
    );
    assert!(section.contains("class=\"chart latency\""), "{section}");
    assert!(section.contains("class=\"chart sparkline\""), "{section}");
    assert!(section.contains("class=\"chart traffic\""), "{section}");
    assert!(!dom.contains("<script"), "the page runs no script");
    let png = std::fs::read(&shot).context("screenshot")?;
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 1000,
        "screenshot"
    );
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());
    if let Some(keep) = std::env::var_os("PGDOG_PAGE_SCREENSHOT") {
        std::fs::copy(&shot, keep)?;
    }
    Ok(())
}
