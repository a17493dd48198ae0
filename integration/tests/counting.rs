//! Counting what the mirror did, and only that: a protocol fault of the mirror server is a
//! `protocol` error (not a lost connection), an error the primary shared is told apart
//! with comparison off too, and a `COPY ... FROM '<file>'` whose path says "stdin" is one
//! request on both sides.

mod common;

use anyhow::{bail, Result};
use bytes::{Buf, BufMut, BytesMut};
use common::{admin_lines, metric, scrape, settled_counts, Counts, MirrorEnv};
use pgdog_integration::{ConfigBuilder, PgCluster};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn accounted(c: &Counts) -> bool {
    c.total == c.mirrored + c.dropped + c.errors
}

/// A stand-in for a mirror server that speaks just enough of the protocol to log pgdog in
/// and answer simple queries, and answers a query containing `bad frame` with a message
/// whose length field is negative. Counts the bad frames it sent.
struct BadFrameServer {
    port: u16,
    bad_frames: Arc<AtomicUsize>,
}

impl BadFrameServer {
    async fn start() -> Result<BadFrameServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let bad_frames = Arc::new(AtomicUsize::new(0));
        let counter = bad_frames.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, counter.clone()));
            }
        });
        Ok(BadFrameServer { port, bad_frames })
    }
}

fn message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
}

async fn serve(mut s: TcpStream, bad_frames: Arc<AtomicUsize>) -> Result<()> {
    let mut buf = BytesMut::new();
    // Untagged packets first: SSLRequest (declined), then the StartupMessage.
    loop {
        while buf.len() < 8 {
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let len = i32::from_be_bytes(buf[..4].try_into()?) as usize;
        while buf.len() < len {
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let code = i32::from_be_bytes(buf[4..8].try_into()?);
        buf.advance(len);
        if code == 80_877_103 || code == 80_877_104 {
            s.write_all(b"N").await?;
            continue;
        }
        break;
    }
    let mut out = BytesMut::new();
    message(&mut out, b'R', &0i32.to_be_bytes());
    for (k, v) in [
        ("server_version", "15.0"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        message(&mut out, b'S', format!("{k}\0{v}\0").as_bytes());
    }
    message(&mut out, b'K', &[0, 0, 0, 7, 0, 0, 0, 9]);
    message(&mut out, b'Z', b"I");
    s.write_all(&out).await?;
    loop {
        while buf.len() >= 5 {
            let len = i32::from_be_bytes(buf[1..5].try_into()?) as usize + 1;
            if buf.len() < len {
                break;
            }
            let msg = buf.split_to(len);
            let mut out = BytesMut::new();
            match msg[0] {
                b'X' => return Ok(()),
                b'Q' if msg.windows(9).any(|w| w == b"bad frame") => {
                    bad_frames.fetch_add(1, Ordering::Relaxed);
                    // A CommandComplete whose length field is negative.
                    out.put_slice(&[b'C', 0xff, 0xff, 0xff, 0xf0]);
                }
                b'Q' => {
                    message(&mut out, b'C', b"SELECT 1\0");
                    message(&mut out, b'Z', b"I");
                }
                _ => {}
            }
            s.write_all(&out).await?;
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

#[tokio::test]
async fn a_bad_frame_from_the_mirror_server_is_a_protocol_error() -> Result<()> {
    let primary = PgCluster::start().await?;
    let fake = BadFrameServer::start().await?;
    let pgdog = ConfigBuilder::new()
        .set("auth_type", "trust")
        .set("mirror_min_runtime_hours", 0)
        .pool("primary", &primary, "pgdog")
        .pool_at("mirror", "127.0.0.1", fake.port, "pgdog")
        .pool_set("primary", "mirror_of", "mirror")
        .pool_set("mirror", "server_tls_sslmode", "disable")
        .start()
        .await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    for sql in ["SELECT 1", "SELECT 2", "SELECT 'bad frame'", "SELECT 3"] {
        // The primary's client never notices what the mirror did.
        client.simple_query(sql).await?;
    }
    drop(client);
    let c = settled_counts(&pgdog, "primary", "4 requests accounted for", |c| {
        c.total == 4 && accounted(c)
    })
    .await?;
    assert_eq!(fake.bad_frames.load(Ordering::Relaxed), 1);
    let text = scrape(&pgdog).await?;
    assert_eq!(metric(&text, "mirror{error_type=\"protocol\"}"), 1, "{c:?}");
    // The two before it were mirrored; the one after it found the connection given up
    // (a `connection` error while the worker backs off) or a fresh one.
    assert!(c.mirrored >= 2, "{c:?}");
    assert_eq!(
        metric(&text, "mirror{error_type=\"connection\"}") + c.mirrored,
        3,
        "{c:?}\n{text}"
    );
    assert!(pgdog.log().contains("protocol error"), "{}", pgdog.log());
    Ok(())
}

#[tokio::test]
async fn errors_both_sides_share_are_told_apart_with_comparison_off() -> Result<()> {
    let env = MirrorEnv::start("", |b| {
        b.set("mirror_compare", false)
            .set("mirror_min_runtime_hours", 0)
            .set("admin_password", "admin")
    })
    .await?
    .with_admin()
    .await?;
    env.primary
        .execute_in("pgdog", "CREATE TABLE only_primary(id int)")
        .await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    for i in 0..14 {
        client.simple_query(&format!("SELECT {i}")).await?;
    }
    for _ in 0..4 {
        // 42P01 on both sides: the mirror behaves as the primary does.
        assert!(client.simple_query("SELECT * FROM missing").await.is_err());
    }
    for _ in 0..2 {
        // Fails on the mirror alone.
        client.simple_query("SELECT * FROM only_primary").await?;
    }
    settled_counts(&env.pgdog, "primary", "20 requests", |c| {
        c.total == 20 && accounted(c)
    })
    .await?;
    let console = env.pgdog.connect_admin("admin", "admin", "pgdog").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = admin_lines(&console, "SHOW MIRROR READINESS")
            .await?
            .join("\n");
        if text.contains("Total Requests: 20") {
            break text;
        }
        if Instant::now() > deadline {
            bail!("readiness never saw 20 requests:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        text.contains("Errors: 2 mirror only, 4 on both sides (not counted)"),
        "{text}"
    );
    // 2 of the mirror's own errors in 20: the shared ones are not the mirror's.
    assert!(text.contains("Error Rate: 10.00%"), "{text}");
    let metrics = scrape(&env.pgdog).await?;
    assert_eq!(metric(&metrics, "mirror{error_type=\"query\"}"), 6);
    Ok(())
}

#[tokio::test]
async fn copy_from_a_file_whose_path_says_stdin_is_one_request_on_both() -> Result<()> {
    let env = MirrorEnv::start("CREATE TABLE t(id int, v text)", |b| {
        b.set("mirror_min_runtime_hours", 0)
    })
    .await?;
    // A server-side file both servers (same host, running as `postgres`) can read.
    let dir = tempfile::Builder::new()
        .prefix("pgdog-stdin-")
        .tempdir_in("/tmp")?;
    let stdin_dir = dir.path().join("stdin");
    std::fs::create_dir(&stdin_dir)?;
    let file = stdin_dir.join("stdin.csv");
    std::fs::write(&file, "1,one\n2,two\n3,three\n")?;
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(dir.path(), 0o755), (&stdin_dir, 0o755), (&file, 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    let path = file.display();
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    client
        .simple_query(&format!(
            "/* from stdin */ COPY t FROM '{path}' WITH (FORMAT csv)"
        ))
        .await?;
    // The next request is its own, on both sides.
    client
        .simple_query("INSERT INTO t VALUES (4, 'after stdin')")
        .await?;
    let rows = client.simple_query("SELECT count(*) FROM t").await?;
    assert!(matches!(
        &rows[1],
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("4")
    ));
    drop(client);
    let c = settled_counts(&env.pgdog, "primary", "3 mirrored", |c| {
        c.total == 3 && accounted(c)
    })
    .await?;
    assert_eq!(
        c,
        Counts {
            total: 3,
            mirrored: 3,
            dropped: 0,
            errors: 0
        }
    );
    let table = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t";
    let on_primary: String = env.primary.query_scalar_in("pgdog", table).await?;
    let on_mirror: String = env.mirror.query_scalar_in("pgdog", table).await?;
    assert_eq!(on_primary, "1:one,2:two,3:three,4:after stdin");
    assert_eq!(on_mirror, on_primary);
    Ok(())
}
