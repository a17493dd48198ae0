use super::*;
use std::path::Path;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("pgdog.toml"))
}

fn problems(text: &str) -> Vec<Problem> {
    parse(text).unwrap_err().problems().to_vec()
}

#[test]
fn empty_config_has_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.general.port, 6432);
    assert_eq!(c.general.admin_port, 6433);
    assert_eq!(c.general.metrics_port, 9090);
    assert_eq!(c.general.host, "127.0.0.1");
    assert_eq!(c.general.auth_type, AuthType::ScramSha256);
    assert_eq!(c.general.mirror_queue, 128);
    assert!(c.pools.is_empty());
}

#[test]
fn spec_config_parses() {
    let c = parse(
        r#"
        [general]
        host = "0.0.0.0"
        port = 6432
        admin_port = 6433
        metrics_port = 9090
        mirror_metrics_enabled = true
        mirror_max_error_rate = 0.05
        mirror_max_latency_ms = 1000
        mirror_min_runtime_hours = 0  # For testing
        mirror_min_requests = 100

        [[pools]]
        name = "primary"
        database = "primary"
        host = "localhost"
        port = 5432
        user = "pgdog"
        password = "pgdog"
        mirror_of = "mirror"
        mirror_exposure = 1.0
        mirror_queue = 100

        [[pools]]
        name = "mirror"
        database = "mirror"
        host = "localhost"
        port = 5433
        user = "pgdog"
        password = "pgdog"
        "#,
    )
    .unwrap();
    assert_eq!(c.pools.len(), 2);
    assert_eq!(c.pools[0].mirror_of.as_deref(), Some("mirror"));
    assert_eq!(c.pools[0].mirror_queue, Some(100));
    assert_eq!(c.general.mirror_min_runtime_hours, 0.0);
}

#[test]
fn unknown_key_names_line_and_key() {
    let p = problems("[general]\nport = 1\n\n[[pools]]\nname = \"a\"\nbogus = 3\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(6));
    assert_eq!(p[0].key, "pools[0].bogus");
    assert!(
        p[0].message.contains("unknown field `bogus`"),
        "{}",
        p[0].message
    );
}

#[test]
fn wrong_type_names_line() {
    let p = problems("[general]\nport = \"x\"\n");
    assert_eq!(p[0].line, Some(2));
    assert_eq!(p[0].key, "general.port");
}

#[test]
fn semantic_problems_are_all_reported() {
    let text = r#"
[[pools]]
name = "a"
mirror_of = "nowhere"
mirror_exposure = 1.5

[[pools]]
name = "a"

[[pools]]
name = "self"
mirror_of = "self"
"#;
    let p = problems(text);
    let keys: Vec<_> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert!(keys.contains(&("pools[0].mirror_of", Some(4))), "{keys:?}");
    assert!(
        keys.contains(&("pools[0].mirror_exposure", Some(5))),
        "{keys:?}"
    );
    assert!(keys.contains(&("pools[1].name", Some(8))), "{keys:?}");
    assert!(keys.contains(&("pools[2].mirror_of", Some(12))), "{keys:?}");
    let rendered = parse(text).unwrap_err().to_string();
    assert!(
        rendered.contains("pgdog.toml:line 4: pools[0].mirror_of: no pool named \"nowhere\""),
        "{rendered}"
    );
}

#[test]
fn redacted_hides_passwords() {
    let c = parse(
        "[general]\nadmin_password = \"s3cret\"\n[[pools]]\nname = \"a\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let shown = format!("{:?}", c.redacted());
    assert!(!shown.contains("s3cret") && !shown.contains("hunter2"));
    assert!(shown.contains(REDACTED));
}

#[test]
fn auth_type_values() {
    assert_eq!(
        parse("[general]\nauth_type = \"md5\"")
            .unwrap()
            .general
            .auth_type,
        AuthType::Md5
    );
    assert_eq!(
        parse("[general]\nauth_type = \"trust\"")
            .unwrap()
            .general
            .auth_type,
        AuthType::Trust
    );
    let p = problems("[general]\nauth_type = \"kerberos\"");
    assert_eq!(p[0].key, "general.auth_type");
}

#[test]
fn tls_settings_are_checked_with_their_keys() {
    // Modes by name, the pool's server mode winning over [general]'s.
    let c = parse(
        "[general]\nclient_tls_cert_file = \"a.crt\"\nclient_tls_key_file = \"a.key\"\n\
         server_tls_sslmode = \"verify-full\"\n[[pools]]\nname = \"p\"\nserver_tls_sslmode = \"require\"\n\
         [[pools]]\nname = \"q\"\n",
    )
    .unwrap();
    assert_eq!(
        c.general.client_tls_mode(),
        ClientTlsMode::Prefer,
        "the default with a certificate"
    );
    assert_eq!(
        c.pools[0].server_tls(&c.general).mode,
        ServerTlsMode::Require
    );
    assert_eq!(
        c.pools[1].server_tls(&c.general).mode,
        ServerTlsMode::VerifyFull
    );
    assert_eq!(
        parse("").unwrap().general.client_tls_mode(),
        ClientTlsMode::Disable
    );

    let p = problems("[general]\nclient_tls_sslmode = \"require\"\n");
    assert_eq!(
        (p[0].key.as_str(), p[0].line),
        ("general.client_tls_sslmode", Some(2))
    );
    assert!(
        p[0].message.contains("client_tls_cert_file"),
        "{}",
        p[0].message
    );
    let p = problems("[general]\nclient_tls_cert_file = \"a.crt\"\n");
    assert_eq!(p[0].key, "general.client_tls_key_file");
    let p = problems(
        "[general]\nclient_tls_sslmode = \"verify-ca\"\nclient_tls_cert_file = \"a\"\nclient_tls_key_file = \"b\"\n",
    );
    assert_eq!(p[0].key, "general.client_tls_ca_file");
    let p = problems("[[pools]]\nname = \"p\"\nserver_tls_key_file = \"k\"\n");
    assert_eq!(
        (p[0].key.as_str(), p[0].line),
        ("pools[0].server_tls_cert_file", Some(1))
    );
    let p = problems("[general]\nserver_tls_sslmode = \"allow\"\n");
    assert_eq!(p[0].line, Some(2));
    assert!(p[0].message.contains("verify-full"), "{}", p[0].message);
}

#[test]
fn otlp_keys_default_parse_and_are_checked() {
    let c = parse("").unwrap();
    let g = &c.general;
    assert_eq!(g.otlp_endpoint, None);
    assert_eq!(g.otlp_protocol, "http/protobuf");
    assert_eq!(g.otlp_interval_ms, 10_000);
    assert!(g.otlp_headers.is_empty());

    let c = parse(
        "[general]\notlp_endpoint = \"http://collector:4318\"\notlp_interval_ms = 500\n\
         otlp_headers = { x-api-key = \"k\", \"x-team\" = \"db\" }\n",
    )
    .unwrap();
    assert_eq!(
        c.general.otlp_endpoint.as_deref(),
        Some("http://collector:4318")
    );
    assert_eq!(c.general.otlp_headers["x-api-key"], "k");
    let shown = format!("{:?}", c.redacted());
    assert!(
        !shown.contains("\"k\"") && shown.contains(REDACTED),
        "{shown}"
    );

    let text = "[general]\nport = 6432\notlp_endpoint = \"https://c:4318\"\n\
                otlp_protocol = \"grpc\"\notlp_interval_ms = 0\n\
                otlp_headers = { \"bad header\" = \"v\" }\n";
    let p = problems(text);
    let keys: Vec<_> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
    for (key, line) in [
        ("general.otlp_endpoint", 3),
        ("general.otlp_protocol", 4),
        ("general.otlp_interval_ms", 5),
        ("general.otlp_headers", 6),
    ] {
        assert!(keys.contains(&(key, Some(line))), "{key}: {keys:?}");
    }
    let grpc = p.iter().find(|p| p.key == "general.otlp_protocol").unwrap();
    assert!(
        grpc.message.contains("grpc is not built in"),
        "{}",
        grpc.message
    );
    let endpoint = problems("[general]\notlp_endpoint = \"collector:4318\"\n");
    assert!(
        endpoint[0].message.contains("expected an http:// URL"),
        "{endpoint:?}"
    );
    assert!(parse("[general]\notlp_protocl = \"grpc\"\n").is_err());
}

#[test]
fn users_and_pool_modes_are_checked_with_their_keys() {
    let text = r#"
[general]
pool_mode = "transaction"

[[pools]]
name = "a"
pool_mode = "session"

[[users]]
name = "alice"
password = "x"
pools = ["a", "nope"]

[[users]]
name = "alice"
password = "SCRAM-SHA-256$4096:c2FsdA==$bad"
"#;
    let p = problems(text);
    let keys: Vec<_> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert!(keys.contains(&("users[0].pools", Some(12))), "{keys:?}");
    assert!(keys.contains(&("users[1].name", Some(15))), "{keys:?}");
    assert!(keys.contains(&("users[1].password", Some(16))), "{keys:?}");

    let ok = parse(
        "[general]\npool_mode = \"transaction\"\n[[pools]]\nname = \"a\"\npool_mode = \"session\"\n[[users]]\nname = \"bob\"\npassword = \"pw\"\n",
    )
    .unwrap();
    assert_eq!(ok.general.pool_mode, PoolMode::Transaction);
    assert_eq!(ok.pools[0].pool_mode, Some(PoolMode::Session));
    assert!(ok.users[0].may_use("a"), "no pools listed: every pool");
    let shown = format!("{:?}", ok.redacted());
    assert!(!shown.contains("\"pw\""), "{shown}");

    let p = problems("[general]\npool_mode = \"statement\"\n");
    assert_eq!(p[0].key, "general.pool_mode");
    assert_eq!(p[0].line, Some(2));
    // SCRAM-only paths under another auth_type.
    let p = problems(
        "[general]\nauth_type = \"md5\"\nauth_user = \"pgdog\"\n[[users]]\nname = \"b\"\npassword = \"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVkS2V5c3RvcmVkS2V5c3RvcmVkS2V5c3RvcmU=:c2VydmVyS2V5c2VydmVyS2V5c2VydmVyS2V5c2VydmU=\"\n",
    );
    let keys: Vec<_> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert!(keys.contains(&("general.auth_user", Some(3))), "{keys:?}");
    assert!(keys.contains(&("users[0].password", Some(6))), "{keys:?}");
}
