//! `COPY ... FROM STDIN`: a simple Query after which the client sends COPY data.

use super::lexer::{significant, Kind};
use super::statements;

/// Whether one of the statements of a simple Query's text is `COPY ... FROM STDIN`, so
/// that the client follows the Query with CopyData and CopyDone (or CopyFail).
pub fn copy_from_stdin(text: &[u8]) -> bool {
    // Most texts do not even mention the word: a byte scan spares them the lexer.
    let mentions = text.windows(4).any(|w| w.eq_ignore_ascii_case(b"copy"));
    mentions && statements(text).any(is_copy_from_stdin)
}

/// `COPY` first, then the words `FROM STDIN` outside parentheses (a column list, or the
/// query of `COPY (query) TO`, is in parentheses).
fn is_copy_from_stdin(statement: &[u8]) -> bool {
    let mut tokens = significant(statement);
    if !tokens.next().is_some_and(|t| t.is_keyword("copy")) {
        return false;
    }
    let mut depth = 0usize;
    let mut after_from = false;
    for t in tokens {
        match t.kind {
            Kind::OpenParen => depth += 1,
            Kind::CloseParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && after_from && t.is_keyword("stdin") {
            return true;
        }
        after_from = depth == 0 && t.is_keyword("from");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_detection() {
        assert!(copy_from_stdin(b"COPY t FROM STDIN\0"));
        assert!(copy_from_stdin(
            b"  -- x\n copy t (a) from stdin with csv\0"
        ));
        assert!(!copy_from_stdin(b"COPY t TO STDOUT\0"));
        assert!(!copy_from_stdin(b"select 'copy from stdin'\0"));
    }

    #[test]
    fn only_from_stdin_as_words_outside_parentheses() {
        for sql in [
            "COPY t FROM stdin",
            "/* a /* nested */ comment */ COPY BINARY t FROM STDIN",
            "copy public.\"T\" (a, \"from\") from stdin with (format csv, header)",
            "COPY t FROM STDIN WHERE a > 0;",
            "select 1; copy t from stdin",
        ] {
            assert!(copy_from_stdin(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "COPY t FROM '/data/stdin.csv'",
            "COPY t FROM PROGRAM 'cat stdin'",
            "COPY (select * from stdin_log) TO STDOUT",
            "COPY (select a from b) TO STDOUT",
            "COPY t TO STDOUT -- from stdin",
            "COPY t FROM \"stdin\"",
            "select 'copy t from stdin'",
            "SELECT 1 FROM stdin",
            "/* COPY t FROM STDIN */ select 1",
            "",
        ] {
            assert!(!copy_from_stdin(sql.as_bytes()), "{sql}");
        }
    }
}
