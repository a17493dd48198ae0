//! Query text as PostgreSQL reads it: one lexer, and what the proxy needs to know about a
//! query's text, built on it. What looks inside SQL text belongs here, so that comments,
//! quoting and dollar quotes are read one way, the server's way.
//!
//! * [`lexer`]: the tokens of a text (PostgreSQL's `scan.l` rules, over raw bytes).
//! * [`statements`]: a simple Query's statements, to pair each with its answer.
//! * [`copy_from_stdin`]: whether the client follows a Query with COPY data (the mirror
//!   tap keeps the data with its request).
//! * [`deallocation`]: which prepared statements a Query makes the server forget (the
//!   mirror's statement repair forgets them too).
//! * [`classify()`]: whether a statement reads or writes (mirroring only reads to a target
//!   kept in sync by replication).
//! * The statement fingerprint ([`mod@crate::compare::fingerprint`]) normalises the lexer's
//!   tokens.
//!
//! All of them take bytes, which need not be UTF-8, and never panic. The functions that
//! read a whole Query's text stop at its first NUL byte (see [`query_text`]), so a Query
//! message's body can be passed as it is. Strings are read with
//! `standard_conforming_strings` on, PostgreSQL's default.
//!
//! # Classification
//!
//! [`classify()`] gives a statement's [`Class`] from its words alone:
//!
//! * **Read**: `SELECT`, `WITH`, `VALUES`, `TABLE` and queries in parentheses (set
//!   operations included), unless one of these words appears anywhere in them: `INSERT`,
//!   `UPDATE`, `DELETE`, `MERGE` (a data-modifying `WITH`, or the statement after the
//!   `WITH`, or `FOR [NO KEY] UPDATE`), `INTO` (`SELECT INTO` creates a table), `SHARE`
//!   after `FOR` or `KEY`, or a call of `nextval`, `setval`, `set_config` or `pg_notify`.
//!   Also `SHOW`; the cursor statements `FETCH`, `MOVE` and `CLOSE`; `EXPLAIN` without
//!   `ANALYZE` (the statement is planned, not run); `COPY table TO STDOUT`.
//! * **The class of another statement**: `EXPLAIN ANALYZE` (or `EXPLAIN (ANALYZE [on])`)
//!   runs the statement it explains; `DECLARE ... CURSOR ... FOR query` (`WITH HOLD` too:
//!   the server keeps the rows, no table changes); `PREPARE name AS statement`;
//!   `COPY (query) TO STDOUT` (the query may be DML with `RETURNING`).
//! * **Transaction**: `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK` (`AND
//!   CHAIN`, `TO SAVEPOINT`), `ABORT`, `SAVEPOINT`, `RELEASE`, `SET TRANSACTION`, `SET
//!   CONSTRAINTS`.
//! * **Session**: `SET`, `SET SESSION`, `SET LOCAL` (a setting, even one that lasts until
//!   the end of the transaction), `SET SESSION CHARACTERISTICS`, `RESET`, `DISCARD`,
//!   `DEALLOCATE`, `LISTEN`, `UNLISTEN`.
//! * **Write**: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `CREATE`, `ALTER`, `DROP`,
//!   `TRUNCATE`, `GRANT`, `REVOKE`, `COMMENT`, `SECURITY LABEL`, `REFRESH`, `VACUUM`,
//!   `ANALYZE`, `CLUSTER`, `REINDEX`, `CHECKPOINT`, `LOCK` (a lock on a replica can hold up
//!   the replication that applies writes), `CALL` and `DO` (they run server code),
//!   `NOTIFY`, `LOAD`, `IMPORT FOREIGN SCHEMA`, `REASSIGN OWNED`, `COPY ... FROM`, `COPY
//!   ... TO` a file or a program (written on the server's machine), `PREPARE
//!   TRANSACTION`, `COMMIT PREPARED`, `ROLLBACK PREPARED`. And whatever lifts the
//!   read-only guard below: `READ WRITE` in `BEGIN`, `START TRANSACTION`, `SET
//!   TRANSACTION` or `SET SESSION CHARACTERISTICS`; `SET` or `RESET` of
//!   `default_transaction_read_only` or `transaction_read_only`.
//! * **Unknown**: `EXECUTE` (the statement it runs was prepared in an earlier text) and
//!   any statement not listed here. Callers treat it as a write.
//!
//! A text of several statements has the greatest class of its statements, in the order
//! Read < Transaction < Session < Unknown < Write.
//!
//! The words of a statement cannot show what the functions it calls do: `SELECT f()`
//! is a read here even when `f` writes. A mirror that should only read therefore runs its
//! sessions with `default_transaction_read_only = on`, set when the session starts (the
//! startup packet's `options`, or the role), so that the server refuses such a write with
//! SQLSTATE 25006, and so that `RESET ALL` and `DISCARD ALL` restore the guard rather than
//! lift it.

mod classify;
mod copy;
mod deallocate;
pub mod lexer;
mod split;

pub use classify::{classify, Class};
pub use copy::copy_from_stdin;
pub use deallocate::{deallocation, Deallocation};
pub use lexer::{first_keyword, fold_lower, significant, tokens, Keyword, Kind, Lexer, Token};
pub use split::{statements, Statements};

/// A simple Query's text as the server reads it: up to its first NUL byte, the message's
/// terminator (the server refuses a message with bytes after it).
pub fn query_text(text: &[u8]) -> &[u8] {
    text.iter()
        .position(|&b| b == 0)
        .map_or(text, |end| &text[..end])
}

#[cfg(test)]
pub(crate) mod proptests;
