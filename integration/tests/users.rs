//! Many roles on one database, end to end: `[[users]]` with a plaintext password or a
//! SCRAM verifier, each (user, database) with its own server pool; `auth_query` for roles
//! not listed, logging in to the server with the keys the client proved (SCRAM
//! pass-through); and a wrong password refused with 28P01 on every path.

mod common;

use anyhow::{Context, Result};
use common::*;
use pgdog_integration::{connect_dsn, ConfigBuilder, PgCluster, Pgdog};
use std::time::Duration;

/// A cluster with roles alice (password), bob (whose verifier goes in the config) and
/// carol (known to the server only), all SCRAM over TCP.
async fn cluster() -> Result<(PgCluster, String)> {
    let c = PgCluster::start().await?;
    c.execute(
        "CREATE ROLE alice LOGIN PASSWORD 'alice-pw'; \
         CREATE ROLE bob LOGIN PASSWORD 'bob-pw'; \
         CREATE ROLE carol LOGIN PASSWORD 'carol-pw'; \
         GRANT ALL ON DATABASE pgdog TO alice, bob, carol; \
         CREATE ROLE dave LOGIN PASSWORD 'dave-pw'",
    )
    .await?;
    c.execute_in("pgdog", "GRANT ALL ON SCHEMA public TO alice, bob, carol")
        .await?;
    let verifier: String = c
        .query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'bob'")
        .await?;
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    Ok((c, verifier))
}

async fn pgdog(c: &PgCluster, bob_verifier: &str, auth_query: bool) -> Result<Pgdog> {
    let mut b = ConfigBuilder::new()
        .set("pool_mode", "transaction")
        .set("admin_password", "admin")
        .pool("primary", c, "pgdog")
        .pool("other", c, "pgdog")
        .raw(&format!(
            "[[users]]\nname = \"alice\"\npassword = \"alice-pw\"\npools = [\"primary\"]\n\n\
             [[users]]\nname = \"bob\"\npassword = \"{bob_verifier}\"\n"
        ));
    if auth_query {
        b = b.set("auth_user", "pgdog").set("auth_password", "pgdog");
    }
    b.start().await
}

async fn current_user(pgdog: &Pgdog, user: &str, password: &str, db: &str) -> Result<String> {
    let c = connect_dsn(&pgdog.dsn(user, password, db)).await?;
    Ok(c.query_one("SELECT current_user::text", &[]).await?.get(0))
}

async fn refused(pgdog: &Pgdog, user: &str, password: &str, db: &str) -> Option<String> {
    sqlstate(&connect_err(&pgdog.dsn(user, password, db)).await)
}

#[tokio::test]
async fn listed_roles_get_pools_of_their_own() -> Result<()> {
    let (c, verifier) = cluster().await?;
    let mut pgdog = pgdog(&c, &verifier, false).await?;
    // The pool's configured user, as always; alice with a plaintext password; bob with
    // the verifier in the config (pgdog logs in to the server with his proved keys).
    assert_eq!(
        current_user(&pgdog, "pgdog", "pgdog", "primary").await?,
        "pgdog"
    );
    let alice = connect_dsn(&pgdog.dsn("alice", "alice-pw", "primary")).await?;
    let bob = connect_dsn(&pgdog.dsn("bob", "bob-pw", "primary")).await?;
    for _ in 0..3 {
        let a: String = alice
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0);
        let b: String = bob
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0);
        assert_eq!((a.as_str(), b.as_str()), ("alice", "bob"));
    }
    assert_eq!(current_user(&pgdog, "bob", "bob-pw", "other").await?, "bob");

    // Wrong passwords, a pool alice may not use, a role nobody lists.
    assert_eq!(
        refused(&pgdog, "alice", "wrong", "primary")
            .await
            .as_deref(),
        Some("28P01")
    );
    assert_eq!(
        refused(&pgdog, "bob", "wrong", "primary").await.as_deref(),
        Some("28P01")
    );
    assert_eq!(
        refused(&pgdog, "alice", "alice-pw", "other")
            .await
            .as_deref(),
        Some("28000")
    );
    assert_eq!(
        refused(&pgdog, "carol", "carol-pw", "primary")
            .await
            .as_deref(),
        Some("28P01"),
        "without auth_query, an unlisted role is refused as a wrong password is"
    );

    // A pool per (user, database): SHOW POOLS has a row each, and the server sees each
    // role's own backends.
    let port = pgdog.admin_port();
    pgdog.wait_for_port(port, Duration::from_secs(10)).await?;
    let console = pgdog.connect_admin("admin", "admin", "pgdog").await?;
    let pools = admin_rows(&console, "SHOW POOLS").await?;
    let users: Vec<(String, String)> = pools
        .iter()
        .map(|r| (r["name"].clone().unwrap(), r["user"].clone().unwrap()))
        .collect();
    for want in [
        ("primary", "pgdog"),
        ("primary", "alice"),
        ("primary", "bob"),
    ] {
        assert!(
            users.iter().any(|(p, u)| (p.as_str(), u.as_str()) == want),
            "{want:?} in {users:?}"
        );
    }
    let roles: Vec<String> = c
        .superuser("postgres")
        .await?
        .query(
            "SELECT DISTINCT usename::text FROM pg_stat_activity \
             WHERE datname = 'pgdog' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        ["alice", "bob"]
            .iter()
            .all(|u| roles.iter().any(|r| r == u)),
        "{roles:?}"
    );
    Ok(())
}

#[tokio::test]
async fn auth_query_logs_in_an_unlisted_role_with_scram_pass_through() -> Result<()> {
    let (c, verifier) = cluster().await?;
    let pgdog = pgdog(&c, &verifier, true).await?;
    // carol is in no config: her verifier comes from the server, and the server login
    // reuses the keys she proved to pgdog (pgdog never saw her password).
    let carol = connect_dsn(&pgdog.dsn("carol", "carol-pw", "primary")).await?;
    for i in 0..3 {
        let who: String = carol
            .query_one("SELECT current_user::text", &[])
            .await
            .context("carol's query")?
            .get(0);
        assert_eq!(who, "carol", "query {i}");
    }
    assert_eq!(
        current_user(&pgdog, "dave", "dave-pw", "other").await?,
        "dave"
    );
    assert_eq!(
        refused(&pgdog, "carol", "wrong", "primary")
            .await
            .as_deref(),
        Some("28P01")
    );
    assert_eq!(
        refused(&pgdog, "nobody", "x", "primary").await.as_deref(),
        Some("28P01")
    );
    // Listed roles still use their entries.
    assert_eq!(
        current_user(&pgdog, "alice", "alice-pw", "primary").await?,
        "alice"
    );
    Ok(())
}
