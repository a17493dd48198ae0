//! The PostgreSQL JDBC driver (pgjdbc, Debian's `libpostgresql-jdbc-java`) through pgdog
//! with a mirror: `integration/java/JdbcSteps.java` runs the everyday steps of a JDBC
//! application in one JVM, and after each step this test checks that the mirror's tables
//! equal the primary's, that the books balance, and that nothing was dropped, failed on
//! the mirror alone or mismatched.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::{admin_rows, counts, metric, scrape, AdminRow, Counts, MirrorEnv};
use pgdog_integration::{PgCluster, Pgdog};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ADMIN_PASSWORD: &str = "s3cret-admin";
/// Debian's pgjdbc (`libpostgresql-jdbc-java`, installed by `scripts/setup.sh`).
const JAR: &str = "/usr/share/java/postgresql.jar";
const TABLES: &[&str] = &["j", "jb"];

/// Compiles the Java program into `dir`.
fn compile(dir: &Path) -> Result<()> {
    ensure!(
        Path::new(JAR).exists(),
        "{JAR} is missing: run scripts/setup.sh (libpostgresql-jdbc-java)"
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/JdbcSteps.java");
    let out = std::process::Command::new("javac")
        .args(["-cp", JAR, "-d"])
        .arg(dir)
        .arg(&source)
        .output()
        .context("running javac (default-jdk-headless, installed by scripts/setup.sh)")?;
    ensure!(
        out.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The rows of the tables, as text, or `None` for a table that does not exist yet.
async fn tables(c: &PgCluster) -> Result<Vec<Option<Vec<String>>>> {
    let client = c.connect("pgdog", "pgdog").await?;
    let mut out = Vec::new();
    for table in TABLES {
        let rows = client
            .query(&format!("SELECT t::text FROM {table} t ORDER BY 1"), &[])
            .await;
        out.push(
            rows.ok()
                .map(|rows| rows.iter().map(|r| r.get(0)).collect()),
        );
    }
    Ok(out)
}

fn col<'a>(row: &'a AdminRow, name: &str) -> &'a str {
    row.get(name).and_then(|v| v.as_deref()).unwrap_or("NULL")
}

/// After a step: the mirror's tables equal the primary's (waited for: the mirror replays
/// behind the primary), the books balance and stay balanced, nothing was dropped, and no
/// statement failed on the mirror alone or answered differently.
async fn check(env: &MirrorEnv, step: &str) -> Result<Counts> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let primary = tables(&env.primary).await?;
    loop {
        let mirror = tables(&env.mirror).await?;
        if mirror == primary {
            break;
        }
        if Instant::now() > deadline {
            bail!("{step}: the mirror's tables differ from the primary's:\nprimary {primary:?}\nmirror  {mirror:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settled: the same balanced counts twice in a row.
    let mut last = counts(&env.pgdog, "primary").await?;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let c = counts(&env.pgdog, "primary").await?;
        if c == last && c.total == c.mirrored + c.dropped + c.errors {
            break;
        }
        if Instant::now() > deadline {
            bail!("{step}: counts did not settle: {c:?}");
        }
        last = c;
    }
    ensure!(last.dropped == 0, "{step}: dropped {last:?}");
    let text = scrape(&env.pgdog).await?;
    let mismatches = metric(&text, "pgdog_mirror_mismatches_total{database=\"primary\"}");
    let console = env
        .pgdog
        .connect_admin("admin", ADMIN_PASSWORD, "pgdog")
        .await?;
    let rows = admin_rows(&console, "SHOW MIRROR QUERIES primary").await?;
    let blamed: Vec<String> = rows
        .iter()
        .filter(|r| col(r, "mirror_errors") != "0" || col(r, "mismatches") != "0")
        .map(|r| format!("{r:?}"))
        .collect();
    ensure!(
        mismatches == 0 && blamed.is_empty(),
        "{step}: {mismatches} mismatches; statements held against the mirror: {blamed:#?}"
    );
    Ok(last)
}

/// Every step of `JdbcSteps.java`, with the checks after each.
#[tokio::test]
async fn jdbc_steps_keep_the_mirror_equal_to_the_primary() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let compiled = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || compile(&dir)
    });
    let env = MirrorEnv::start("", |b| {
        b.set("admin_password", ADMIN_PASSWORD)
            .set("mirror_min_runtime_hours", 0)
            .pool_set("primary", "mirror_exposure", 1.0)
    })
    .await?
    .with_admin()
    .await?;
    compiled.await??;
    let pgdog: &Pgdog = &env.pgdog;
    let classpath = format!("{}:{JAR}", dir.path().display());
    let mut java = tokio::process::Command::new("java")
        .args(["-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", &classpath])
        .arg("JdbcSteps")
        .args([
            pgdog.host(),
            &pgdog.port().to_string(),
            "pgdog",
            "pgdog",
            "primary",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running java")?;
    let mut stdin = java.stdin.take().expect("piped");
    let mut lines = BufReader::new(java.stdout.take().expect("piped")).lines();
    let mut steps = Vec::new();
    let finished = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("JdbcSteps said nothing for 60 s")??;
        match line.as_deref() {
            Some(l) if l.starts_with("STEP ") => {
                let step = l["STEP ".len()..].to_string();
                match check(&env, &step).await {
                    Ok(c) => {
                        stdin.write_all(b"ok\n").await?;
                        steps.push((step, c));
                    }
                    Err(e) => {
                        stdin.write_all(b"failed\n").await?;
                        return Err(e);
                    }
                }
            }
            Some("DONE") => break true,
            Some(_) => {}
            None => break false,
        }
    };
    let out = java.wait_with_output().await?;
    ensure!(
        finished && out.status.success(),
        "JdbcSteps failed after {:?}: {}",
        steps.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(steps.len(), 10, "{steps:?}");
    Ok(())
}
