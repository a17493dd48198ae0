//! One connection to a PostgreSQL server: connect (over TLS when the pool's
//! `server_tls_sslmode` says so), log in, run the proxy's own simple queries (parameter
//! `SET`s, resets), and hand the stream to the forwarding loop.

use super::statements::ServerStatements;
use super::BackendError;
use crate::auth::scram;
use crate::auth::scram_client::{Binding, Credential, ScramClient};
use crate::protocol::backend::{
    backend_key, data_row, error_fields, parameter_status, ready_status,
};
use crate::protocol::frame::{body, read_message, Reader};
use crate::protocol::tag::server as tag;
use crate::protocol::{messages, startup, BackendKey, TxStatus};
use crate::tls::{Connector, Stream};
use bytes::BytesMut;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Largest message accepted from a server (PostgreSQL's own limit is 1 GiB).
pub const MAX_SERVER_MESSAGE: usize = 1 << 30;

/// How long a connection may sit in its pool before a checkout asks the kernel, not only
/// the runtime, whether the server closed it ([`Server::is_alive`]). Under load a
/// connection is back in use within a fraction of a millisecond, and the runtime's view of
/// its socket is enough: the peek it saves was one system call per transaction in
/// transaction mode, about a sixth of all of them (docs/benchmarks.md, issue 19). A server that
/// closes within that window is the same race as one that closes just after the check.
pub const ASK_KERNEL_AFTER: Duration = Duration::from_millis(100);

/// Where and as whom to connect (the credential comes apart: see [`Credential`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

impl std::fmt::Debug for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self)
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

pub struct Server {
    pub stream: Stream,
    /// ParameterStatus values as last reported by the server.
    pub params: Vec<(String, String)>,
    /// The server's BackendKeyData, for cancel requests.
    pub key: BackendKey,
    /// Transaction status of the last ReadyForQuery.
    pub status: TxStatus,
    /// The prepared statements the connection has (transaction mode).
    pub statements: ServerStatements,
    /// What a user of the connection keeps with it between checkouts, such as the
    /// mirror's record of the statements it prepared (transaction mode). Gone with a
    /// reset query, which may have dropped what it describes.
    pub attached: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Transaction mode: the key of the client parameters this connection was last brought
    /// in line with (0: none, or changed since), so that a client with the same parameters
    /// skips the comparison.
    pub synced_for: u64,
    /// Parameters the proxy set for a client, and to what (those the server does not
    /// report, such as `search_path`, are known only this way).
    proxy_set: Vec<(String, String)>,
    pub created: Instant,
    /// When the connection last went back to its pool (its creation before that).
    pub idle_since: Instant,
    buf: BytesMut,
}

impl Server {
    /// Opens and authenticates a connection, waiting at most `timeout`.
    /// Opens and authenticates a connection as `addr.user` with `credential` (none: the
    /// server must trust the user), waiting at most `timeout`.
    pub async fn connect(
        addr: &ServerAddr,
        credential: Option<&Credential>,
        tls: &Connector,
        timeout: Duration,
    ) -> Result<Server, BackendError> {
        Self::connect_with(addr, credential, tls, timeout, None).await
    }

    /// [`Server::connect`], with `options` (the startup packet's `options`: `-c name=value`
    /// settings the session starts with, which `RESET ALL` and `DISCARD ALL` return to).
    pub async fn connect_with(
        addr: &ServerAddr,
        credential: Option<&Credential>,
        tls: &Connector,
        timeout: Duration,
        options: Option<&str>,
    ) -> Result<Server, BackendError> {
        let connect = Self::connect_inner(addr, credential, tls, options);
        match tokio::time::timeout(timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::ConnectTimeout {
                addr: format!("{}:{}", addr.host, addr.port),
                ms: timeout.as_millis() as u64,
            }),
        }
    }

    async fn connect_inner(
        addr: &ServerAddr,
        credential: Option<&Credential>,
        tls: &Connector,
        options: Option<&str>,
    ) -> Result<Server, BackendError> {
        let stream = match unix_socket(&addr.host, addr.port) {
            // libpq does not use TLS over a Unix socket, whatever `sslmode` says.
            Some(path) => Stream::Unix(UnixStream::connect(&path).await.map_err(|source| {
                BackendError::Connect {
                    addr: path.display().to_string(),
                    source,
                }
            })?),
            None => {
                let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
                    .await
                    .map_err(|source| BackendError::Connect {
                        addr: format!("{}:{}", addr.host, addr.port),
                        source,
                    })?;
                tcp.set_nodelay(true)?;
                negotiate_tls(tcp, tls).await?
            }
        };
        let mut server = Server {
            stream,
            params: Vec::new(),
            key: BackendKey::default(),
            status: TxStatus::Idle,
            statements: ServerStatements::default(),
            attached: None,
            synced_for: 0,
            proxy_set: Vec::new(),
            created: Instant::now(),
            idle_since: Instant::now(),
            buf: BytesMut::with_capacity(8192),
        };
        let mut params = vec![
            ("user", addr.user.as_str()),
            ("database", addr.database.as_str()),
            ("application_name", "pgdog"),
        ];
        params.extend(options.map(|o| ("options", o)));
        let packet = startup::encode(&params);
        server.stream.write_all(&packet).await?;
        server.authenticate(addr, credential).await?;
        server.read_until_ready().await?;
        if server.buf.is_empty() {
            // Sessions read with buffers of their own: an idle connection keeps none.
            server.buf = BytesMut::new();
        }
        Ok(server)
    }

    async fn authenticate(
        &mut self,
        addr: &ServerAddr,
        credential: Option<&Credential>,
    ) -> Result<(), BackendError> {
        let mut scram: Option<ScramClient> = None;
        loop {
            let msg = self.read().await?;
            match msg[0] {
                tag::AUTHENTICATION => {}
                tag::ERROR_RESPONSE => return Err(BackendError::Auth(error_fields(&msg)?)),
                tag::NEGOTIATE_PROTOCOL_VERSION => continue, // NegotiateProtocolVersion: nothing to adjust for 3.0
                tag => {
                    return Err(crate::protocol::ProtocolError::Unexpected {
                        tag,
                        context: "server authentication",
                    }
                    .into())
                }
            }
            let mut r = Reader::new(body(&msg), "Authentication");
            let code = r.i32()?;
            let password = || match credential {
                Some(Credential::Password(p)) => Ok(p.as_str()),
                Some(Credential::Keys(_)) => Err(BackendError::OnlyScramKeys),
                None => Err(BackendError::NoPassword),
            };
            let mut out = BytesMut::new();
            match code {
                0 => return Ok(()),
                3 => messages::password(&mut out, password()?),
                5 => {
                    let salt: [u8; 4] = r.bytes(4)?.try_into().expect("4 bytes");
                    let hash = postgres_protocol::authentication::md5_hash(
                        addr.user.as_bytes(),
                        password()?.as_bytes(),
                        salt,
                    );
                    messages::password(&mut out, &hash);
                }
                10 => {
                    let mut offered = Vec::new();
                    loop {
                        let m = r.cstr()?;
                        if m.is_empty() {
                            break;
                        }
                        offered.push(m.to_string());
                    }
                    let binding = self.channel_binding(&offered)?;
                    let credential = credential.cloned().ok_or(BackendError::NoPassword)?;
                    let (client, first) = ScramClient::new(credential, binding);
                    messages::sasl_initial_response(&mut out, client.mechanism(), first.as_bytes());
                    scram = Some(client);
                }
                11 => {
                    let mut client = scram
                        .take()
                        .ok_or(BackendError::Scram("unexpected SASLContinue".into()))?;
                    let server_first = r.rest().to_vec();
                    // With a password the proof needs PBKDF2 (milliseconds of CPU): off the
                    // runtime's threads.
                    let (client, client_final) = tokio::task::spawn_blocking(move || {
                        client.server_first(&server_first).map(|f| (client, f))
                    })
                    .await
                    .map_err(|e| BackendError::Scram(e.to_string()))?
                    .map_err(|e| BackendError::Scram(e.to_string()))?;
                    messages::sasl_response(&mut out, client_final.as_bytes());
                    scram = Some(client);
                }
                12 => {
                    let client = scram
                        .take()
                        .ok_or(BackendError::Scram("unexpected SASLFinal".into()))?;
                    client
                        .server_final(r.rest())
                        .map_err(|e| BackendError::Scram(e.to_string()))?;
                    continue;
                }
                other => {
                    return Err(BackendError::UnsupportedAuth(format!(
                        "authentication method {other}"
                    )))
                }
            }
            self.stream.write_all(&out).await?;
        }
    }

    /// Reads until ReadyForQuery, recording ParameterStatus and BackendKeyData; an
    /// ErrorResponse on the way is returned as an error (after reaching ReadyForQuery).
    async fn read_until_ready(&mut self) -> Result<(), BackendError> {
        let mut error = None;
        loop {
            let msg = self.read().await?;
            match msg[0] {
                tag::PARAMETER_STATUS => self.set_param(parameter_status(&msg)?),
                tag::BACKEND_KEY_DATA => self.key = backend_key(&msg)?,
                tag::ERROR_RESPONSE => error = Some(error_fields(&msg)?),
                tag::READY_FOR_QUERY => {
                    self.status = ready_status(&msg);
                    return match error {
                        Some(e) => Err(BackendError::Server(e)),
                        None => Ok(()),
                    };
                }
                _ => {} // NoticeResponse, CommandComplete, ... of the proxy's own queries
            }
        }
    }

    /// The channel binding to answer the SASL mechanisms `offered` with: over TLS, to the
    /// server's certificate when the server offers `SCRAM-SHA-256-PLUS` (as libpq's
    /// `channel_binding=prefer`).
    fn channel_binding(&self, offered: &[String]) -> Result<Binding, BackendError> {
        let offers = |m: &str| offered.iter().any(|o| o == m);
        if let Some(end_point) = self.stream.peer_end_point() {
            if offers(scram::MECHANISM_PLUS) {
                return Ok(Binding::EndPoint(end_point));
            }
        }
        if !offers(scram::MECHANISM) {
            return Err(BackendError::UnsupportedAuth(format!(
                "SASL {}",
                offered.join(",")
            )));
        }
        Ok(match self.stream {
            // We could bind, the server did not offer to.
            Stream::Tls(_) => Binding::Unrequested,
            Stream::Plain(_) | Stream::Unix(_) => Binding::None,
        })
    }

    /// The server reported a parameter's value.
    pub fn set_param(&mut self, (name, value): (String, String)) {
        self.synced_for = 0;
        // A report is the truth: what the proxy set is kept only for unreported parameters.
        self.proxy_set
            .retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
        match self.params.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name, value)),
        }
    }

    /// A parameter's value as far as the proxy knows: what it set, else what the server
    /// reported.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.proxy_set
            .iter()
            .chain(&self.params)
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server reports parameter `name` (ParameterStatus).
    pub fn reports(&self, name: &str) -> bool {
        self.params
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// The proxy set parameter `name` to `value` (`None`: reset it to the default).
    pub fn proxy_set(&mut self, name: &str, value: Option<&str>) {
        self.proxy_set
            .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            self.proxy_set.push((name.to_string(), value.to_string()));
        }
    }

    /// The unreported parameters the proxy set on this connection.
    pub fn set_by_proxy(&self) -> impl Iterator<Item = &str> {
        self.proxy_set.iter().map(|(k, _)| k.as_str())
    }

    async fn read(&mut self) -> Result<BytesMut, BackendError> {
        Ok(read_message(&mut self.stream, &mut self.buf, MAX_SERVER_MESSAGE).await?)
    }

    /// Runs one simple query of the proxy's own and waits for ReadyForQuery.
    pub async fn execute(&mut self, sql: &str) -> Result<(), BackendError> {
        let mut out = BytesMut::new();
        messages::query(&mut out, sql);
        self.stream.write_all(&out).await?;
        self.read_until_ready().await
    }

    /// Runs `sql` of the proxy's own with text `params` (extended protocol, unnamed
    /// statement) and returns its first row as text, `None` when it returned none.
    pub async fn query_row(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<Option<Vec<Option<String>>>, BackendError> {
        let mut out = BytesMut::new();
        messages::parse(&mut out, "", sql);
        messages::bind_text(&mut out, params);
        messages::execute(&mut out);
        messages::sync(&mut out);
        self.stream.write_all(&out).await?;
        let (mut row, mut error) = (None, None);
        loop {
            let msg = self.read().await?;
            match msg[0] {
                tag::DATA_ROW if row.is_none() => row = Some(data_row(&msg)?),
                tag::ERROR_RESPONSE => error = Some(error_fields(&msg)?),
                tag::READY_FOR_QUERY => {
                    self.status = ready_status(&msg);
                    return match error {
                        Some(e) => Err(BackendError::Server(e)),
                        None => Ok(row),
                    };
                }
                _ => {}
            }
        }
    }

    /// Sends `request` (a client's frames, ending in one Sync or one simple query) and hands
    /// every message of its answer before ReadyForQuery to `each`.
    pub async fn replay(
        &mut self,
        request: &[u8],
        mut each: impl FnMut(u8, &[u8]),
    ) -> Result<(), BackendError> {
        self.stream.write_all(request).await?;
        loop {
            let msg = self.read().await?;
            if msg[0] == tag::READY_FOR_QUERY {
                self.status = ready_status(&msg);
                return Ok(());
            }
            each(msg[0], &msg);
        }
    }

    /// Whether [`Server::reset`] with `query` would send anything.
    pub fn needs_reset(&self, query: Option<&str>) -> bool {
        !self.status.is_idle() || query.is_some_and(|q| !q.trim().is_empty())
    }

    /// Makes the connection fit for the next client: ends any transaction, then runs
    /// `query` (`server_reset_query`, `DISCARD ALL` by default: prepared statements, temp
    /// tables, session settings, advisory locks).
    pub async fn reset(&mut self, query: Option<&str>) -> Result<(), BackendError> {
        if !self.status.is_idle() {
            self.execute("ROLLBACK").await?;
        }
        match query.filter(|q| !q.trim().is_empty()) {
            Some(query) => {
                self.execute(query).await?;
                // What the proxy knew of the connection's session state may be gone.
                self.statements.clear();
                self.proxy_set.clear();
                self.synced_for = 0;
                self.attached = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether an idle connection is still open: an idle server sends nothing, so anything
    /// readable (end of stream, or a FATAL before closing) means it is gone. A connection
    /// back in the pool for less than [`ASK_KERNEL_AFTER`] is judged by what the runtime has
    /// seen of its socket, without a system call; one idle for longer is also asked of the
    /// kernel ([`Stream::is_quiet`]).
    pub fn is_alive(&self) -> bool {
        self.stream
            .is_quiet(self.idle_since.elapsed() >= ASK_KERNEL_AFTER)
    }

    /// Bytes the proxy read but did not consume (must be empty before forwarding starts).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Sends a CancelRequest for the query running on the server with `key`, over plain
    /// TCP as libpq does (a cancel carries nothing secret, and servers take it before any
    /// `pg_hba.conf` rule applies).
    pub async fn cancel(host: &str, port: u16, key: BackendKey) -> std::io::Result<()> {
        let packet = startup::encode_cancel(key);
        if let Some(path) = unix_socket(host, port) {
            let mut stream = UnixStream::connect(path).await?;
            stream.write_all(&packet).await?;
            return stream.shutdown().await;
        }
        let mut stream = TcpStream::connect((host, port)).await?;
        stream.write_all(&packet).await?;
        stream.shutdown().await
    }

    pub async fn terminate(mut self) {
        let mut out = BytesMut::new();
        messages::terminate(&mut out);
        let _ = self.stream.write_all(&out).await;
    }
}

/// A `host` starting with `/` is the directory of the server's Unix socket, as in libpq:
/// the socket of `port` in it.
fn unix_socket(host: &str, port: u16) -> Option<std::path::PathBuf> {
    host.starts_with('/')
        .then(|| crate::net::unix_socket_path(std::path::Path::new(host), port))
}

/// The SSLRequest of `tls`'s mode, and the handshake if the server accepts: plain TCP under
/// `disable`, or when a server under `prefer` answers `N`.
async fn negotiate_tls(mut tcp: TcpStream, tls: &Connector) -> Result<Stream, BackendError> {
    use crate::config::ServerTlsMode;
    if tls.mode == ServerTlsMode::Disable {
        return Ok(Stream::Plain(tcp));
    }
    tcp.write_all(&startup::encode_ssl_request()).await?;
    match tcp.read_u8().await? {
        b'S' => tls.connect(tcp).await.map_err(BackendError::Tls),
        b'N' if tls.mode == ServerTlsMode::Prefer => Ok(Stream::Plain(tcp)),
        b'N' => Err(BackendError::TlsRefused(tls.mode.as_str())),
        other => Err(crate::protocol::ProtocolError::Unexpected {
            tag: other,
            context: "answer to SSLRequest",
        }
        .into()),
    }
}
