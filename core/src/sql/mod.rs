//! Query text as PostgreSQL reads it: one lexer, and what the proxy needs to know about a
//! query's text, built on it. What looks inside SQL text belongs here, so that comments,
//! quoting and dollar quotes are read one way, the server's way.
//!
//! * [`lexer`]: the tokens of a text (PostgreSQL's `scan.l` rules, over raw bytes).
//!
//! It takes bytes, which need not be UTF-8, and never panics. Strings are read with
//! `standard_conforming_strings` on, PostgreSQL's default.

pub mod lexer;

pub use lexer::{first_keyword, fold_lower, significant, tokens, Keyword, Kind, Lexer, Token};
