//! Which statement a mirrored request runs, so its answer can be compared the right way
//! (in order or not) and counted under its fingerprint.
//!
//! A simple Query carries its text. An extended-protocol batch names a prepared
//! statement (Bind -> Parse seen earlier in the session, possibly in another request), so
//! each mirror session remembers the fingerprints of the statements and portals its
//! client prepared, exactly as the server does. A request that executes several
//! statements before its Sync is counted under the first one it executes.

use super::fingerprint::{fingerprint, Fingerprint};
use crate::protocol::frame::{split_cstr as cstr, Frames};
use crate::protocol::tag::client;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// Prepared statements and portals of one session, by name (`""` is the unnamed one).
#[derive(Default)]
pub struct Statements {
    statements: HashMap<Box<[u8]>, Arc<Fingerprint>>,
    portals: HashMap<Box<[u8]>, Arc<Fingerprint>>,
    /// The unnamed portal, bound by almost every Bind: kept apart so that binding it
    /// allocates nothing.
    unnamed_portal: Option<Arc<Fingerprint>>,
}

/// Most named statements remembered per session (a client that prepares without end
/// must not grow the proxy without end; forgotten ones are simply not compared).
const MAX_STATEMENTS: usize = 10_000;

impl Statements {
    /// Follows the request's Parse/Bind/Close messages and returns the statement it runs.
    pub fn request(&mut self, payload: &[Bytes]) -> Option<Arc<Fingerprint>> {
        let mut executed = None;
        let mut parsed = None;
        for part in payload {
            for (tag, msg) in Frames::new(part) {
                let body = msg.get(5..).unwrap_or(&[]);
                match tag {
                    client::QUERY => {
                        let (text, _) = cstr(body)?;
                        executed.get_or_insert_with(|| Arc::new(fingerprint(&lossy(text))));
                    }
                    client::PARSE => {
                        let (name, rest) = cstr(body)?;
                        let (text, _) = cstr(rest)?;
                        let fp = Arc::new(fingerprint(&lossy(text)));
                        if name.is_empty() || self.statements.len() < MAX_STATEMENTS {
                            self.statements.insert(name.into(), fp.clone());
                        }
                        parsed = Some(fp);
                    }
                    client::BIND => {
                        let (portal, rest) = cstr(body)?;
                        let (statement, _) = cstr(rest)?;
                        let fp = self.statements.get(statement).cloned();
                        match (portal.is_empty(), fp) {
                            (true, fp) => self.unnamed_portal = fp,
                            (false, Some(fp)) => {
                                self.portals.insert(portal.into(), fp);
                            }
                            (false, None) => {
                                self.portals.remove(portal);
                            }
                        }
                    }
                    client::EXECUTE => {
                        let (portal, _) = cstr(body)?;
                        if executed.is_none() {
                            executed = if portal.is_empty() {
                                self.unnamed_portal.clone()
                            } else {
                                self.portals.get(portal).cloned()
                            };
                        }
                    }
                    client::CLOSE => {
                        let (&kind, rest) = body.split_first()?;
                        let (name, _) = cstr(rest)?;
                        match (kind, name.is_empty()) {
                            (client::STATEMENT, _) => drop(self.statements.remove(name)),
                            (_, true) => self.unnamed_portal = None,
                            (_, false) => drop(self.portals.remove(name)),
                        }
                    }
                    _ => {}
                }
            }
        }
        executed.or(parsed)
    }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn msg(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = parts.concat();
        let mut m = vec![tag];
        m.put_u32(body.len() as u32 + 4);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn follows_prepared_statements_across_requests() {
        let mut s = Statements::default();
        let q = Bytes::from(msg(b'Q', &[b"select 1\0"]));
        assert_eq!(&*s.request(&[q]).unwrap().text, "select ?");

        // Parse + Sync alone (a driver preparing): the parsed statement.
        let prepare = [
            msg(
                b'P',
                &[b"s1\0select * from t where id = $1 order by id\0", &[0, 0]],
            ),
            msg(b'S', &[]),
        ]
        .concat();
        let fp = s.request(&[Bytes::from(prepare)]).unwrap();
        assert!(fp.ordered);
        // A later Bind/Execute of "s1" runs that statement.
        let run = [
            msg(b'B', &[b"\0s1\0", &[0, 0, 0, 0, 0, 0]]),
            msg(b'E', &[b"\0", &[0, 0, 0, 0]]),
            msg(b'S', &[]),
        ]
        .concat();
        assert_eq!(s.request(&[Bytes::from(run.clone())]).unwrap().id, fp.id);
        // Closed: no longer known.
        let close = [msg(b'C', &[b"Ss1\0"]), msg(b'S', &[])].concat();
        assert!(s.request(&[Bytes::from(close)]).is_none());
        assert!(s.request(&[Bytes::from(run)]).is_none());
    }
}
