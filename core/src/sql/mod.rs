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
//!
//! All of them take bytes, which need not be UTF-8, and never panic. The functions that
//! read a whole Query's text stop at its first NUL byte (see [`query_text`]), so a Query
//! message's body can be passed as it is. Strings are read with
//! `standard_conforming_strings` on, PostgreSQL's default.

mod copy;
mod deallocate;
pub mod lexer;
mod split;

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
