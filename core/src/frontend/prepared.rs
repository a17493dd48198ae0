//! Named prepared statements in transaction mode, where a client's next transaction may
//! run on another server connection than the one it prepared a statement on.
//!
//! The client's named statements are prepared on the server under names derived from
//! their definition ([`global_name`]): clients running the same statement share it, and a
//! connection that lacks a statement a client binds gets it prepared first, in the same
//! write. On the way:
//! - a Parse the server does not need (it has the statement) is not sent, and the client
//!   gets the ParseComplete it expects anyway, in its place among the answers;
//! - a Close of a named statement is answered CloseComplete by the proxy (the server keeps
//!   the statement for other clients; its cache is bounded and least recently used first
//!   out);
//! - the answers to the proxy's own messages (a Parse put in front of a Bind, a Close that
//!   makes room, a SQL `PREPARE` for an `EXECUTE`) never reach the client.
//!
//! [`Rewriter`] turns the client's messages into the server's and records, in a
//! [`Plan`], what becomes of each answer; [`Plan::answer`] applies it to what the server
//! sends back. Stretches of traffic that nothing was changed in are a single plan entry
//! and pass through untouched.

use crate::backend::statements::{
    global_name, ServerStatements, StatementRegistry, GLOBAL_NAME_LEN,
};
use crate::protocol::frame::{split_cstr as cstr, Frames};
use crate::protocol::messages;
use crate::protocol::tag::{client, server};
use crate::sql;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// One client's named statements.
#[derive(Default)]
pub struct ClientStatements {
    /// Protocol-level statements by the client's name.
    named: HashMap<Box<[u8]>, Prepared>,
    /// SQL-level `PREPARE`d statements by name: the `PREPARE` query and its hash.
    sql: HashMap<Box<[u8]>, (u64, Bytes)>,
    /// Where the proxy's statements are counted (`SHOW PREPARED_STATEMENTS`).
    registry: Option<Arc<StatementRegistry>>,
}

/// A client's statement as the server knows it.
#[derive(Clone)]
struct Prepared {
    global: [u8; GLOBAL_NAME_LEN],
    /// The Parse message under the global name.
    parse: Bytes,
}

impl Drop for ClientStatements {
    fn drop(&mut self) {
        self.clear();
    }
}

impl ClientStatements {
    /// A client's statements, counted in `registry`.
    pub fn new(registry: Arc<StatementRegistry>) -> ClientStatements {
        ClientStatements {
            named: HashMap::new(),
            sql: HashMap::new(),
            registry: Some(registry),
        }
    }

    fn insert(&mut self, name: &[u8], prepared: Prepared, definition: &[u8]) {
        if let Some(r) = &self.registry {
            r.add(&prepared.global, definition);
        }
        if let Some(old) = self.named.insert(name.into(), prepared) {
            self.unregister(&old);
        }
    }

    fn remove(&mut self, name: &[u8]) {
        if let Some(old) = self.named.remove(name) {
            self.unregister(&old);
        }
    }

    fn clear(&mut self) {
        for (_, old) in std::mem::take(&mut self.named) {
            self.unregister(&old);
        }
        self.sql.clear();
    }

    fn unregister(&self, old: &Prepared) {
        if let Some(r) = &self.registry {
            r.remove(&old.global);
        }
    }

    pub fn len(&self) -> usize {
        self.named.len()
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }

    /// Where the statements are counted.
    pub fn registry(&self) -> Option<Arc<StatementRegistry>> {
        self.registry.clone()
    }

    /// Outside a transaction, with no server connection: a batch of nothing but Parse of
    /// named statements the servers have accepted before (a Close of a named statement
    /// may be among them) and its Sync is answered here, so that a client that prepares
    /// synchronously while others of its own (pgbench's threads, say) hold every server
    /// connection does not wait for one. The statements are prepared on a server when the
    /// client first uses them. Returns the answer (ParseComplete or CloseComplete for
    /// each message, then ReadyForQuery idle), `None` for any other batch.
    pub fn answer_locally(&mut self, msgs: &[u8]) -> Option<BytesMut> {
        let registry = self.registry.clone()?;
        let mut frames = Frames::new(msgs).peekable();
        let mut reply = BytesMut::new();
        let mut parses = Vec::new();
        while let Some((tag, msg)) = frames.next() {
            let body = &msg[5..];
            match tag {
                client::PARSE => {
                    let (name, definition) = cstr(body).filter(|(n, _)| !n.is_empty())?;
                    let global = global_name(definition);
                    if !registry.is_accepted(&global) {
                        return None;
                    }
                    parses.push((name, global, definition));
                    messages::put(&mut reply, server::PARSE_COMPLETE, |_| {});
                }
                client::CLOSE if body.first() == Some(&client::STATEMENT) => {
                    cstr(&body[1..]).filter(|(n, _)| !n.is_empty())?;
                    messages::put(&mut reply, server::CLOSE_COMPLETE, |_| {});
                }
                client::SYNC if frames.peek().is_none() && !reply.is_empty() => {
                    messages::ready_for_query(&mut reply, crate::protocol::TxStatus::Idle);
                }
                _ => return None,
            }
        }
        if !reply.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
            return None;
        }
        // In the order the server would have applied them.
        let mut at = 0;
        for (tag, msg) in Frames::new(msgs) {
            match tag {
                client::PARSE => {
                    let (name, global, definition) = parses[at];
                    at += 1;
                    let mut parse = BytesMut::with_capacity(msg.len() + GLOBAL_NAME_LEN);
                    messages::put(&mut parse, client::PARSE, |b| {
                        b.put_slice(&global);
                        b.put_u8(0);
                        b.put_slice(definition);
                    });
                    let prepared = Prepared {
                        global,
                        parse: parse.freeze(),
                    };
                    self.insert(name, prepared, definition);
                }
                client::CLOSE => {
                    if let Some((name, _)) = cstr(&msg[6..]) {
                        self.remove(name);
                    }
                }
                _ => {}
            }
        }
        Some(reply)
    }

    /// The client's statement names and their server-side names (`SHOW PREPARED_STATEMENTS`).
    pub fn names(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.named
            .iter()
            .map(|(name, p)| (&name[..], &p.global[..]))
    }
}

/// What an answer the server sends becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Answers passed through as they are, up to this many ReadyForQuery.
    Plain(u32),
    /// The answer to one message of the client's: passed through.
    Forward(Answer),
    /// The answer to one message of the proxy's own: dropped.
    Swallow(Answer),
    /// An answer the client expects to a message the server never got: sent to the client
    /// in its place.
    Synthetic(u8),
}

/// Which message an answer belongs to, by the message that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// ParseComplete; `Some` for a statement prepared under a global name (forgotten by
    /// the server's cache if the Parse fails).
    Parse(Option<[u8; GLOBAL_NAME_LEN]>),
    Bind,
    Close,
    /// RowDescription or NoData (after ParameterDescription, for a statement).
    Describe,
    /// CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// ReadyForQuery: a Sync, a simple Query or a FunctionCall.
    Ready,
}

impl Answer {
    fn ends_with(self, tag: u8) -> bool {
        match self {
            Answer::Parse(_) => tag == server::PARSE_COMPLETE,
            Answer::Bind => tag == server::BIND_COMPLETE,
            Answer::Close => tag == server::CLOSE_COMPLETE,
            Answer::Describe => matches!(tag, server::ROW_DESCRIPTION | server::NO_DATA),
            Answer::Execute => matches!(
                tag,
                server::COMMAND_COMPLETE | server::EMPTY_QUERY_RESPONSE | server::PORTAL_SUSPENDED
            ),
            Answer::Ready => tag == server::READY_FOR_QUERY,
        }
    }
}

/// What becomes of the answers still to come, in the order their messages were sent.
#[derive(Debug, Default)]
pub struct Plan {
    entries: VecDeque<Entry>,
    /// Learns which global statements the servers accept.
    registry: Option<Arc<StatementRegistry>>,
}

impl Plan {
    /// A plan that tells `registry` which statements the servers accepted or refused.
    pub fn new(registry: Option<Arc<StatementRegistry>>) -> Plan {
        Plan {
            entries: VecDeque::new(),
            registry,
        }
    }

    /// Whether every answer to come passes through untouched (the fast path).
    pub fn is_plain(&self) -> bool {
        self.entries.iter().all(|e| matches!(e, Entry::Plain(_)))
    }

    /// Nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `readies` ReadyForQuery passed through untouched (the plan [`Plan::is_plain`]).
    pub fn plain_answered(&mut self, mut readies: u32) {
        while readies > 0 {
            let Some(Entry::Plain(n)) = self.entries.front_mut() else {
                return;
            };
            let taken = readies.min(*n);
            *n -= taken;
            readies -= taken;
            if *n == 0 {
                self.entries.pop_front();
            }
        }
    }

    fn push(&mut self, entry: Entry) {
        match (self.entries.back_mut(), entry) {
            (Some(Entry::Plain(n)), Entry::Plain(m)) => *n += m,
            (_, Entry::Plain(0)) => {}
            _ => self.entries.push_back(entry),
        }
    }

    /// Takes one whole server message; appends to `out` what the client gets of it (and
    /// of any answers the proxy stands in for before it). `server` learns of a Parse that
    /// failed.
    pub fn answer(
        &mut self,
        msg: &[u8],
        out: &mut BytesMut,
        server_statements: &mut ServerStatements,
    ) {
        let tag = msg[0];
        self.synthesize_due(out);
        if matches!(
            tag,
            server::NOTICE_RESPONSE | server::PARAMETER_STATUS | server::NOTIFICATION_RESPONSE
        ) {
            out.extend_from_slice(msg);
            return;
        }
        match self.entries.front_mut() {
            None => out.extend_from_slice(msg),
            Some(Entry::Plain(readies)) => {
                out.extend_from_slice(msg);
                if tag == server::READY_FOR_QUERY {
                    *readies -= 1;
                    if *readies == 0 {
                        self.entries.pop_front();
                    }
                }
            }
            Some(&mut Entry::Forward(answer)) | Some(&mut Entry::Swallow(answer)) => {
                let forward = matches!(self.entries.front(), Some(Entry::Forward(_)));
                if tag == server::ERROR_RESPONSE {
                    // The server skips to the next Sync: so does the plan. The client sees
                    // the error even when it answers the proxy's own message, since what it
                    // sent after it fails too.
                    out.extend_from_slice(msg);
                    self.failed(server_statements);
                    return;
                }
                if forward {
                    out.extend_from_slice(msg);
                }
                if let (Answer::Parse(Some(name)), Some(r)) = (answer, &self.registry) {
                    if tag == server::PARSE_COMPLETE {
                        r.accepted(&name, true);
                    }
                }
                if answer.ends_with(tag) {
                    self.entries.pop_front();
                    self.synthesize_due(out);
                }
            }
            Some(Entry::Synthetic(_)) => unreachable!("synthesized above"),
        }
    }

    /// Sends the client the answers the proxy stands in for, up to the next real one.
    fn synthesize_due(&mut self, out: &mut BytesMut) {
        while let Some(&Entry::Synthetic(tag)) = self.entries.front() {
            messages::put(out, tag, |_| {});
            self.entries.pop_front();
        }
    }

    /// An error: every answer up to the Sync's ReadyForQuery will not come.
    fn failed(&mut self, server_statements: &mut ServerStatements) {
        while let Some(entry) = self.entries.front() {
            match entry {
                Entry::Forward(Answer::Ready) | Entry::Swallow(Answer::Ready) | Entry::Plain(_) => {
                    return
                }
                Entry::Forward(Answer::Parse(Some(name)))
                | Entry::Swallow(Answer::Parse(Some(name))) => {
                    server_statements.remove(name);
                    if let Some(r) = &self.registry {
                        r.accepted(name, false);
                    }
                }
                _ => {}
            }
            self.entries.pop_front();
        }
    }
}

/// Rewrites client messages for one server connection.
pub struct Rewriter<'a> {
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    pub plan: &'a mut Plan,
    /// `max_prepared_statements`.
    pub limit: usize,
}

impl Rewriter<'_> {
    /// Takes a run of whole client messages. Returns `None` when they go to the server as
    /// they are (only their ReadyForQuery count is recorded), else the messages to send.
    pub fn rewrite(&mut self, msgs: &[u8]) -> Option<BytesMut> {
        if !Frames::new(msgs).any(|(tag, msg)| touches_statements(tag, msg)) {
            let readies = Frames::new(msgs)
                .filter(|(tag, _)| ends_request(*tag))
                .count();
            self.plan.push(Entry::Plain(readies as u32));
            return None;
        }
        let mut out = BytesMut::with_capacity(msgs.len() + 64);
        for (tag, msg) in Frames::new(msgs) {
            self.message(tag, msg, &mut out);
        }
        Some(out)
    }

    fn message(&mut self, tag: u8, msg: &[u8], out: &mut BytesMut) {
        let body = &msg[5..];
        match tag {
            client::PARSE => match cstr(body) {
                Some((name, definition)) if !name.is_empty() => self.parse(name, definition, out),
                _ => self.forward(msg, Answer::Parse(None), out),
            },
            client::BIND => match cstr(body).and_then(|(portal, rest)| Some((portal, cstr(rest)?)))
            {
                Some((portal, (name, rest))) if !name.is_empty() => match self.ensure(name, out) {
                    Some(global) => {
                        messages::put(out, client::BIND, |b| {
                            b.put_slice(portal);
                            b.put_u8(0);
                            b.put_slice(&global);
                            b.put_u8(0);
                            b.put_slice(rest);
                        });
                        self.plan.push(Entry::Forward(Answer::Bind));
                    }
                    None => self.forward(msg, Answer::Bind, out),
                },
                _ => self.forward(msg, Answer::Bind, out),
            },
            client::DESCRIBE | client::CLOSE if body.first() == Some(&client::STATEMENT) => {
                match cstr(&body[1..]) {
                    Some((name, _)) if !name.is_empty() && tag == client::CLOSE => {
                        self.client.remove(name);
                        self.plan.push(Entry::Synthetic(server::CLOSE_COMPLETE));
                    }
                    Some((name, _)) if !name.is_empty() => match self.ensure(name, out) {
                        Some(global) => {
                            messages::put(out, client::DESCRIBE, |b| {
                                b.put_u8(client::STATEMENT);
                                b.put_slice(&global);
                                b.put_u8(0);
                            });
                            self.plan.push(Entry::Forward(Answer::Describe));
                        }
                        None => self.forward(msg, Answer::Describe, out),
                    },
                    _ => {
                        let answer = if tag == client::CLOSE {
                            Answer::Close
                        } else {
                            Answer::Describe
                        };
                        self.forward(msg, answer, out)
                    }
                }
            }
            client::DESCRIBE => self.forward(msg, Answer::Describe, out),
            client::CLOSE => self.forward(msg, Answer::Close, out),
            client::EXECUTE => self.forward(msg, Answer::Execute, out),
            client::QUERY => {
                self.query(&body[..body.len().saturating_sub(1)], out);
                self.forward(msg, Answer::Ready, out);
            }
            t if ends_request(t) => self.forward(msg, Answer::Ready, out),
            // Flush, COPY data: no answer of their own.
            _ => out.extend_from_slice(msg),
        }
    }

    fn forward(&mut self, msg: &[u8], answer: Answer, out: &mut BytesMut) {
        out.extend_from_slice(msg);
        self.plan.push(Entry::Forward(answer));
    }

    /// A Parse of named statement `name`: prepared on the server unless it has it.
    fn parse(&mut self, name: &[u8], definition: &[u8], out: &mut BytesMut) {
        let global = global_name(definition);
        let mut parse = BytesMut::with_capacity(definition.len() + GLOBAL_NAME_LEN + 6);
        messages::put(&mut parse, client::PARSE, |b| {
            b.put_slice(&global);
            b.put_u8(0);
            b.put_slice(definition);
        });
        let prepared = Prepared {
            global,
            parse: parse.freeze(),
        };
        self.client.insert(name, prepared.clone(), definition);
        if self.server.touch(&global) {
            self.plan.push(Entry::Synthetic(server::PARSE_COMPLETE));
        } else {
            self.prepare(&prepared, out);
            self.plan.push(Entry::Forward(Answer::Parse(Some(global))));
        }
    }

    /// The global name of client statement `name`, prepared on the server first (answer
    /// swallowed) when it lacks it; `None` for a statement the client never prepared
    /// (the server then says so).
    fn ensure(&mut self, name: &[u8], out: &mut BytesMut) -> Option<[u8; GLOBAL_NAME_LEN]> {
        let prepared = self.client.named.get(name)?.clone();
        if !self.server.touch(&prepared.global) {
            self.prepare(&prepared, out);
            self.plan
                .push(Entry::Swallow(Answer::Parse(Some(prepared.global))));
        }
        Some(prepared.global)
    }

    /// Writes `prepared`'s Parse, closing the least recently used statement first when the
    /// server's cache is full. (The caller records the Parse's answer.)
    fn prepare(&mut self, prepared: &Prepared, out: &mut BytesMut) {
        if let Some(r) = &self.client.registry {
            r.prepared(&prepared.global);
        }
        if let Some(evicted) = self.server.insert(prepared.global, self.limit) {
            messages::put(out, client::CLOSE, |b| {
                b.put_u8(client::STATEMENT);
                b.put_slice(&evicted);
                b.put_u8(0);
            });
            self.plan.push(Entry::Swallow(Answer::Close));
        }
        out.extend_from_slice(&prepared.parse);
    }

    /// A simple query: SQL-level `PREPARE`, `EXECUTE` and deallocations are followed.
    fn query(&mut self, text: &[u8], out: &mut BytesMut) {
        match sql_statement(text) {
            SqlStatement::Prepare(name) => {
                let hash = xxh3_64(text);
                self.client
                    .sql
                    .insert(name.clone().into(), (hash, Bytes::copy_from_slice(text)));
                self.server.set_sql(&name, Some(hash));
            }
            SqlStatement::Execute(name) => {
                let Some((hash, prepare)) = self.client.sql.get(&name[..]).cloned() else {
                    return;
                };
                match self.server.sql(&name) {
                    Some(h) if h == hash => return,
                    Some(_) => {
                        let deallocate = format!(
                            "DEALLOCATE \"{}\"",
                            String::from_utf8_lossy(&name).replace('"', "\"\"")
                        );
                        messages::query(out, &deallocate);
                        self.plan.push(Entry::Swallow(Answer::Ready));
                    }
                    None => {}
                }
                messages::put(out, client::QUERY, |b| {
                    b.put_slice(&prepare);
                    b.put_u8(0);
                });
                self.plan.push(Entry::Swallow(Answer::Ready));
                self.server.set_sql(&name, Some(hash));
            }
            SqlStatement::Deallocate(Some(name)) => {
                self.client.sql.remove(&name[..]);
                self.server.set_sql(&name, None);
            }
            SqlStatement::Deallocate(None) => {
                // DEALLOCATE ALL and DISCARD ALL: protocol-level statements too.
                self.client.clear();
                self.server.clear();
            }
            SqlStatement::Other => {}
        }
    }
}

/// Whether a message names a statement, or may (a simple query's SQL-level statements).
fn touches_statements(tag: u8, msg: &[u8]) -> bool {
    let body = &msg[5..];
    match tag {
        client::PARSE => body.first().is_some_and(|&b| b != 0),
        client::BIND => cstr(body)
            .and_then(|(_, rest)| rest.first())
            .is_some_and(|&b| b != 0),
        client::DESCRIBE | client::CLOSE => {
            body.first() == Some(&client::STATEMENT) && body.get(1).is_some_and(|&b| b != 0)
        }
        client::QUERY => !matches!(sql_statement(body), SqlStatement::Other),
        _ => false,
    }
}

/// The messages that end a request (each answered by one ReadyForQuery).
fn ends_request(tag: u8) -> bool {
    matches!(tag, client::QUERY | client::SYNC | client::FUNCTION_CALL)
}

/// What a simple query does to SQL-level prepared statements.
#[derive(Debug, PartialEq)]
enum SqlStatement {
    Prepare(Vec<u8>),
    Execute(Vec<u8>),
    /// A name, or all of them (`DEALLOCATE ALL`, `DISCARD ALL`).
    Deallocate(Option<Vec<u8>>),
    Other,
}

/// A simple query's first statement, as far as SQL-level prepared statements go (names as
/// the server keeps them: [`sql::Token::name`]).
fn sql_statement(text: &[u8]) -> SqlStatement {
    let mut tokens = sql::significant(sql::query_text(text));
    let Some(first) = tokens.next() else {
        return SqlStatement::Other;
    };
    let name = |t: Option<sql::Token>| t.and_then(|t| t.name()).map(|n| n.into_owned());
    if first.is_keyword("prepare") {
        return match tokens.next() {
            Some(t) if t.is_keyword("transaction") => SqlStatement::Other,
            t => name(t).map_or(SqlStatement::Other, SqlStatement::Prepare),
        };
    }
    if first.is_keyword("execute") {
        return name(tokens.next()).map_or(SqlStatement::Other, SqlStatement::Execute);
    }
    match sql::deallocation(text) {
        Some(sql::Deallocation::All) => SqlStatement::Deallocate(None),
        Some(sql::Deallocation::One(name)) => SqlStatement::Deallocate(Some(name)),
        None => SqlStatement::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.put_u32(body.len() as u32 + 4);
        m.extend_from_slice(body);
        m
    }

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    fn bind(name: &str) -> Vec<u8> {
        let mut body = format!("\0{name}\0").into_bytes();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        msg(b'B', &body)
    }

    fn execute() -> Vec<u8> {
        msg(b'E', &[0, 0, 0, 0, 0])
    }

    fn sync() -> Vec<u8> {
        msg(b'S', &[])
    }

    /// A server connection as the tests see it: its statements and what it answers.
    struct Conn {
        statements: ServerStatements,
    }

    fn tags(bytes: &[u8]) -> String {
        Frames::new(bytes).map(|(t, _)| t as char).collect()
    }

    /// The server's answers to `sent` (each message answered as PostgreSQL does, a Parse
    /// of an existing name failing with 42P05).
    fn server_answers(sent: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for (tag, _) in Frames::new(sent) {
            let answer = match tag {
                b'P' => b'1',
                b'B' => b'2',
                b'C' => b'3',
                b'E' => b'C',
                b'S' | b'Q' => b'Z',
                _ => continue,
            };
            match answer {
                b'C' => messages::command_complete(&mut out, "SELECT 1"),
                b'Z' => messages::ready_for_query(&mut out, crate::protocol::TxStatus::Idle),
                t => messages::put(&mut out, t, |_| {}),
            }
        }
        out.to_vec()
    }

    /// Sends `msgs` through a rewriter for `conn`, answers them as the server would, and
    /// returns (what the server got, what the client gets back).
    fn exchange(
        client: &mut ClientStatements,
        conn: &mut Conn,
        plan: &mut Plan,
        msgs: &[Vec<u8>],
    ) -> (String, String) {
        let msgs = msgs.concat();
        let mut rw = Rewriter {
            client,
            server: &mut conn.statements,
            plan,
            limit: 2,
        };
        let sent = rw.rewrite(&msgs).map_or(msgs.clone(), |b| b.to_vec());
        let answers = server_answers(&sent);
        let mut back = BytesMut::new();
        for (_, m) in Frames::new(&answers) {
            plan.answer(m, &mut back, &mut conn.statements);
        }
        (tags(&sent), tags(&back))
    }

    #[test]
    fn a_statement_prepared_on_one_connection_is_bound_on_another() {
        let mut client = ClientStatements::default();
        let mut plan = Plan::default();
        let (mut a, mut b) = (
            Conn {
                statements: ServerStatements::default(),
            },
            Conn {
                statements: ServerStatements::default(),
            },
        );
        let (sent, back) = exchange(
            &mut client,
            &mut a,
            &mut plan,
            &[parse("s1", "select $1"), sync()],
        );
        assert_eq!((sent.as_str(), back.as_str()), ("PS", "1Z"));
        // The next transaction lands on b: the statement is prepared there first, and the
        // client sees only the answers to what it sent.
        let (sent, back) = exchange(
            &mut client,
            &mut b,
            &mut plan,
            &[bind("s1"), execute(), sync()],
        );
        assert_eq!((sent.as_str(), back.as_str()), ("PBES", "2CZ"));
        // Back on a: it has it; nothing extra.
        let (sent, back) = exchange(
            &mut client,
            &mut a,
            &mut plan,
            &[bind("s1"), execute(), sync()],
        );
        assert_eq!((sent.as_str(), back.as_str()), ("BES", "2CZ"));
        assert!(plan.is_empty());
    }

    #[test]
    fn a_parse_the_server_does_not_need_is_answered_by_the_proxy() {
        let mut plan = Plan::default();
        let mut conn = Conn {
            statements: ServerStatements::default(),
        };
        let (mut one, mut two) = (ClientStatements::default(), ClientStatements::default());
        exchange(
            &mut one,
            &mut conn,
            &mut plan,
            &[parse("a", "select 1"), sync()],
        );
        // Another client, the same statement under another name: shared.
        let (sent, back) = exchange(
            &mut two,
            &mut conn,
            &mut plan,
            &[parse("b", "select 1"), bind("b"), execute(), sync()],
        );
        assert_eq!((sent.as_str(), back.as_str()), ("BES", "12CZ"));
        // A Close is answered by the proxy too: the server keeps the statement.
        let close = msg(b'C', b"Sb\0");
        let (sent, back) = exchange(&mut two, &mut conn, &mut plan, &[close, sync()]);
        assert_eq!((sent.as_str(), back.as_str()), ("S", "3Z"));
        assert_eq!(conn.statements.len(), 1);
    }

    #[test]
    fn the_server_cache_closes_its_least_recently_used_statement() {
        let mut client = ClientStatements::default();
        let mut plan = Plan::default();
        let mut conn = Conn {
            statements: ServerStatements::default(),
        };
        for (i, sql) in ["select 1", "select 2", "select 3"].iter().enumerate() {
            let (sent, back) = exchange(
                &mut client,
                &mut conn,
                &mut plan,
                &[parse(&format!("s{i}"), sql), sync()],
            );
            // The third one makes room (limit 2): the proxy's Close is swallowed.
            assert_eq!(sent, if i == 2 { "CPS" } else { "PS" });
            assert_eq!(back, "1Z");
        }
        assert_eq!(conn.statements.len(), 2);
        // s0 was closed on the server: binding it prepares it again.
        let (sent, back) = exchange(
            &mut client,
            &mut conn,
            &mut plan,
            &[bind("s0"), execute(), sync()],
        );
        assert_eq!((sent.as_str(), back.as_str()), ("CPBES", "2CZ"));
    }

    #[test]
    fn an_error_skips_the_answers_that_will_not_come() {
        let mut client = ClientStatements::default();
        let mut plan = Plan::default();
        let mut statements = ServerStatements::default();
        let mut rw = Rewriter {
            client: &mut client,
            server: &mut statements,
            plan: &mut plan,
            limit: 10,
        };
        let sent = rw
            .rewrite(&[parse("bad", "selec 1"), bind("bad"), execute(), sync()].concat())
            .unwrap();
        assert_eq!(tags(&sent), "PBES");
        let mut answers = BytesMut::new();
        messages::error_response(&mut answers, messages::Severity::Error, "42601", "syntax");
        messages::ready_for_query(&mut answers, crate::protocol::TxStatus::Idle);
        let mut back = BytesMut::new();
        for (_, m) in Frames::new(&answers) {
            plan.answer(m, &mut back, &mut statements);
        }
        assert_eq!(tags(&back), "EZ");
        assert!(plan.is_empty());
        assert!(statements.is_empty(), "the failed Parse is not cached");
    }

    #[test]
    fn plain_traffic_passes_untouched() {
        let mut client = ClientStatements::default();
        let mut plan = Plan::default();
        let mut statements = ServerStatements::default();
        let mut rw = Rewriter {
            client: &mut client,
            server: &mut statements,
            plan: &mut plan,
            limit: 10,
        };
        let q = msg(b'Q', b"select 1\0");
        assert!(rw
            .rewrite(
                &[
                    q.clone(),
                    parse("", "select 2"),
                    bind(""),
                    execute(),
                    sync()
                ]
                .concat()
            )
            .is_none());
        assert!(plan.is_plain());
        assert_eq!(plan.entries, [Entry::Plain(2)]);
    }

    #[test]
    fn sql_prepare_follows_the_client_to_another_connection() {
        let mut client = ClientStatements::default();
        let mut plan = Plan::default();
        let (mut a, mut b) = (
            Conn {
                statements: ServerStatements::default(),
            },
            Conn {
                statements: ServerStatements::default(),
            },
        );
        let prepare = msg(b'Q', b"PREPARE q(int) AS SELECT $1\0");
        let (sent, back) = exchange(&mut client, &mut a, &mut plan, &[prepare]);
        assert_eq!((sent.as_str(), back.as_str()), ("Q", "Z"));
        let run = msg(b'Q', b"EXECUTE q(1)\0");
        let (sent, back) = exchange(&mut client, &mut b, &mut plan, std::slice::from_ref(&run));
        assert_eq!(
            (sent.as_str(), back.as_str()),
            ("QQ", "Z"),
            "PREPARE put in front, its answer swallowed"
        );
        let (sent, _) = exchange(&mut client, &mut b, &mut plan, &[run]);
        assert_eq!(sent, "Q");
    }

    #[test]
    fn sql_statements_are_read_as_the_server_reads_them() {
        use SqlStatement::*;
        assert_eq!(
            sql_statement(b"PREPARE Q1(int) AS select 1"),
            Prepare(b"q1".to_vec())
        );
        assert_eq!(sql_statement(b"prepare transaction 'x'"), Other);
        assert_eq!(sql_statement(b"EXECUTE q1(2)"), Execute(b"q1".to_vec()));
        assert_eq!(
            sql_statement(b"deallocate prepare q1;"),
            Deallocate(Some(b"q1".to_vec()))
        );
        assert_eq!(sql_statement(b"DEALLOCATE ALL"), Deallocate(None));
        assert_eq!(sql_statement(b"discard all"), Deallocate(None));
        assert_eq!(sql_statement(b"select 1"), Other);
        assert_eq!(
            sql_statement(b"/* app */ EXECUTE \"Q1\"(2)"),
            Execute(b"Q1".to_vec())
        );
        assert_eq!(sql_statement(b"-- prepare x as\nselect 1"), Other);
    }

    /// Outside a transaction, a Parse (and Sync) of a statement the servers accepted
    /// before is answered without a server; anything else needs one.
    #[test]
    fn a_known_statement_is_prepared_without_a_server() {
        let registry = Arc::new(StatementRegistry::default());
        let mut first = ClientStatements::new(registry.clone());
        let batch = [parse("s1", "select 1"), sync()].concat();
        assert!(first.answer_locally(&batch).is_none(), "never accepted yet");
        // The first client prepares it on a server, which accepts it.
        let mut plan = Plan::new(first.registry());
        let mut conn = Conn {
            statements: ServerStatements::default(),
        };
        let sent = Rewriter {
            client: &mut first,
            server: &mut conn.statements,
            plan: &mut plan,
            limit: 10,
        }
        .rewrite(&batch)
        .unwrap();
        let mut out = BytesMut::new();
        for (_, m) in Frames::new(&server_answers(&sent)) {
            plan.answer(m, &mut out, &mut conn.statements);
        }
        assert_eq!(tags(&out), "1Z");
        // A second client's Parse of it: answered here, and the statement is its own.
        let mut second = ClientStatements::new(registry.clone());
        let reply = second.answer_locally(&batch).expect("answered locally");
        assert_eq!(tags(&reply), "1Z");
        assert_eq!(second.len(), 1);
        assert_eq!(registry.list()[0].1.clients, 2);
        let with_close = [msg(b'C', b"Ss1\0"), parse("s1", "select 1"), sync()].concat();
        assert_eq!(tags(&second.answer_locally(&with_close).unwrap()), "31Z");
        for other in [
            [parse("s2", "select 2"), sync()].concat(),
            [parse("", "select 1"), sync()].concat(),
            [parse("s1", "select 1"), bind("s1"), execute(), sync()].concat(),
            parse("s1", "select 1"),
            [parse("s1", "select 1"), sync(), sync()].concat(),
        ] {
            assert!(second.answer_locally(&other).is_none(), "{}", tags(&other));
        }
    }
}
