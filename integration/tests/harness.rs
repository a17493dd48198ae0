//! Self-tests of the harness: real clusters, each server-side auth method, stop/restart, clean-up, and
//! the process handle driven with a stand-in binary (pgdog itself is tested by the proxy's own suites).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pgdog_integration::{free_port, ConfigBuilder, PgCluster, Pgdog};

/// Processes whose command line mentions `needle`.
fn pgrep(needle: &str) -> String {
    let out = Command::new("pgrep")
        .arg("-af")
        .arg(needle)
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn two_clusters_all_auth_methods_and_cleanup() {
    let (a, b) = tokio::try_join!(PgCluster::start(), PgCluster::start()).unwrap();
    assert_ne!(a.port(), b.port());
    assert!(a.is_running() && b.is_running());

    for cluster in [&a, &b] {
        for user in ["pgdog", "postgres", "md5user", "plainuser", "trustuser"] {
            let client = cluster.connect(user, "pgdog").await.unwrap();
            let me: String = client
                .query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(me, user);
        }
    }

    // Each password-checking method really checks; trust does not.
    for user in ["pgdog", "md5user", "plainuser"] {
        let err = a.connect_with(user, "wrong", "pgdog").await.unwrap_err();
        assert!(
            format!("{err:#}").contains("password authentication failed"),
            "{user}: {err:#}"
        );
    }
    a.connect_with("trustuser", "anything", "pgdog")
        .await
        .unwrap();

    // md5user's password is stored as md5, the others as SCRAM verifiers.
    let md5: String = a
        .query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5user'")
        .await
        .unwrap();
    assert!(md5.starts_with("md5"), "{md5}");
    let scram: String = a
        .query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'pgdog'")
        .await
        .unwrap();
    assert!(scram.starts_with("SCRAM-SHA-256$"), "{scram}");

    // The proxy's server-side auth tests need exactly these hba methods over TCP.
    let methods: String = a
        .query_scalar(
            "SELECT string_agg(user_name[1] || ':' || auth_method, ',' ORDER BY line_number) \
             FROM pg_hba_file_rules WHERE type = 'host' AND address = '127.0.0.1'",
        )
        .await
        .unwrap();
    assert_eq!(
        methods,
        "trustuser:trust,md5user:md5,plainuser:password,all:scram-sha-256"
    );

    let settings: String = a
        .query_scalar(
            "SELECT current_setting('fsync') || ' ' || current_setting('max_connections') \
             || ' ' || current_setting('listen_addresses')",
        )
        .await
        .unwrap();
    assert_eq!(settings, "off 200 127.0.0.1");

    let (a_data, b_data) = (a.data_dir().to_path_buf(), b.data_dir().to_path_buf());
    let a_root = a_data.parent().unwrap().to_path_buf();
    assert!(!pgrep(a_data.to_str().unwrap()).is_empty());
    drop(a);
    drop(b);
    for data in [&a_data, &b_data] {
        let left = pgrep(data.to_str().unwrap());
        assert!(left.is_empty(), "processes left behind: {left}");
    }
    assert!(
        !a_root.exists(),
        "temp dir {} not removed",
        a_root.display()
    );
}

#[tokio::test]
async fn stop_and_start_again_keeps_port_and_data() {
    let cluster = PgCluster::start().await.unwrap();
    let port = cluster.port();
    cluster.create_database("shop").await.unwrap();
    cluster
        .execute_in(
            "shop",
            "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)",
        )
        .await
        .unwrap();

    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(cluster.connect("pgdog", "shop").await.is_err());
    cluster.stop().unwrap(); // idempotent

    cluster.start_again().unwrap();
    assert!(cluster.is_running());
    assert_eq!(cluster.port(), port);
    let client = cluster.connect("pgdog", "shop").await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let owner: String = cluster
        .query_scalar(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'shop'",
        )
        .await
        .unwrap();
    assert_eq!(owner, "pgdog");
    assert!(cluster.log_path().exists());
}

/// The blocking API works from a plain test, without a runtime.
#[test]
fn blocking_start_and_psql() {
    let cluster = PgCluster::start_blocking().unwrap();
    let out = cluster
        .psql(
            "pgdog",
            "CREATE TABLE x (v text);\nINSERT INTO x VALUES ('a');\nSELECT v FROM x;",
        )
        .unwrap();
    assert_eq!(out.trim(), "a");
    let err = cluster.psql("pgdog", "SELECT nonsense;").unwrap_err();
    assert!(format!("{err:#}").contains("nonsense"), "{err:#}");
}

/// A stand-in for pgdog: listens on [general] port, logs, exits 0 on SIGTERM, and refuses a config
/// containing `fail_please` with exit code 3.
const FAKE_PGDOG: &str = r#"#!/usr/bin/perl
use strict;
use warnings;
use IO::Socket::INET;
my $path;
for (my $i = 0; $i < @ARGV; $i++) { $path = $ARGV[$i + 1] if $ARGV[$i] eq '--config'; }
open(my $fh, '<', $path) or die "cannot open $path";
my $text = do { local $/; <$fh> };
if ($text =~ /fail_please/) { print STDERR "config error at line 2: fail_please\n"; exit 3; }
my ($port) = $text =~ /^port\s*=\s*(\d+)/m;
$| = 1;
$SIG{TERM} = sub { print "got SIGTERM\n"; exit 0; };
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 5, ReuseAddr => 1)
    or die "bind $port: $!";
print "fake pgdog listening on $port\n";
while (1) { my $c = $srv->accept; close($c) if $c; }
"#;

fn write_fake(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("fake-pgdog");
    std::fs::write(&path, FAKE_PGDOG).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn process_handle_lifecycle_with_stand_in() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = write_fake(tmp.path());
    let builder = ConfigBuilder::new().pool_at("db", "127.0.0.1", free_port(), "db");
    let config = builder.build();

    let mut proc = Pgdog::start_with_binary(&fake, &config).await.unwrap();
    assert_eq!(Some(proc.port()), builder.port());
    assert_eq!(Some(proc.admin_port()), builder.admin_port());
    assert_eq!(Some(proc.metrics_port()), builder.metrics_port());
    assert_eq!(std::fs::read_to_string(proc.config_path()).unwrap(), config);
    assert!(proc.rss_kb().unwrap() > 0);
    assert!(proc.log().contains("listening"));

    proc.sigterm();
    let status = proc.wait_exit(Duration::from_secs(5)).await.unwrap();
    assert!(status.success(), "{status}");
    assert!(proc.log().contains("got SIGTERM"));

    proc.restart().await.unwrap();
    assert!(proc.is_running());
    let pid = proc.pid().unwrap();
    let dir = proc.config_path().parent().unwrap().to_path_buf();
    drop(proc);
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || !is_running_pid(pid));
    assert!(!dir.exists());

    let (status, output) =
        Pgdog::start_expect_failure_with_binary(&fake, "[general]\nfail_please = 1\n").unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(output.contains("line 2"), "{output}");
}

#[tokio::test]
async fn process_handle_reports_early_exit_with_log() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = write_fake(tmp.path());
    let err = Pgdog::start_with_binary(&fake, "[general]\nfail_please = true\n")
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("exited during start-up"), "{text}");
    assert!(text.contains("fail_please"), "{text}");
}

fn is_running_pid(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}
