//! A simple Query's text cut into the statements the server runs one after the other.

use super::lexer::{tokens, Kind, Lexer, Token};
use super::query_text;

/// The statements of a simple Query's text, in order: each a sub-slice of the text from
/// its first token to its last, without the `;` that ends it. A statement ends at a `;`
/// outside parentheses and outside the body of a routine written in SQL-standard form
/// (`CREATE FUNCTION ... BEGIN ATOMIC ...; ...; END`); `;` inside strings, comments and
/// quoted identifiers are tokens of those. Empty statements (only white space and
/// comments) are skipped. The text ends at its first NUL byte (see [`query_text`]).
pub fn statements(text: &[u8]) -> Statements<'_> {
    let text = query_text(text);
    Statements {
        text,
        tokens: tokens(text),
    }
}

/// An iterator over the statements of a text: see [`statements`].
#[derive(Debug, Clone)]
pub struct Statements<'a> {
    text: &'a [u8],
    tokens: Lexer<'a>,
}

impl<'a> Iterator for Statements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let mut nesting = Nesting::default();
            let mut span: Option<(usize, usize)> = None;
            let mut ended = false;
            for token in self.tokens.by_ref() {
                if token.is_trivia() {
                    continue;
                }
                if token.kind == Kind::Semicolon && nesting.is_top() {
                    ended = true;
                    break;
                }
                nesting.see(&token);
                let start = span.map_or(token.start, |(start, _)| start);
                span = Some((start, token.end()));
            }
            match span {
                Some((start, end)) => return Some(&self.text[start..end]),
                None if !ended => return None,
                None => {}
            }
        }
    }
}

/// What keeps a `;` from ending a statement: parentheses, and the `BEGIN ... END` blocks
/// of a routine body in SQL-standard form. The server finds those with its grammar; this
/// finds them as psql does: in a statement that starts `CREATE [OR REPLACE] FUNCTION` or
/// `PROCEDURE`, outside parentheses, `BEGIN` opens a block, `CASE` inside a block opens
/// one too (it also ends with `END`), and `END` closes one.
#[derive(Debug, Default)]
struct Nesting {
    parens: usize,
    start: Start,
    blocks: usize,
}

/// How far the statement's first words go towards `CREATE [OR REPLACE] FUNCTION`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Start {
    #[default]
    Nothing,
    Create,
    CreateOr,
    CreateOrReplace,
    Routine,
    Other,
}

impl Nesting {
    fn is_top(&self) -> bool {
        self.parens == 0 && self.blocks == 0
    }

    fn see(&mut self, token: &Token) {
        match token.kind {
            Kind::OpenParen => self.parens += 1,
            Kind::CloseParen => self.parens = self.parens.saturating_sub(1),
            _ => {}
        }
        // Most statements are known not to define a routine after their first word: their
        // words are not looked at again.
        if self.start == Start::Other {
            return;
        }
        let keyword = token.keyword();
        self.start = self.start.then(keyword.as_deref());
        if self.start != Start::Routine || self.parens > 0 {
            return;
        }
        match keyword.as_deref() {
            Some(b"begin") => self.blocks += 1,
            Some(b"case") if self.blocks > 0 => self.blocks += 1,
            Some(b"end") => self.blocks = self.blocks.saturating_sub(1),
            _ => {}
        }
    }
}

impl Start {
    /// After the next token (`keyword` when it is a word).
    fn then(self, keyword: Option<&[u8]>) -> Start {
        use Start::*;
        match (self, keyword) {
            (Nothing, Some(b"create")) => Create,
            (Create, Some(b"or")) => CreateOr,
            (CreateOr, Some(b"replace")) => CreateOrReplace,
            (Create | CreateOrReplace, Some(b"function" | b"procedure")) => Routine,
            (Routine, _) => Routine,
            _ => Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sql: &str) -> Vec<&str> {
        statements(sql.as_bytes())
            .map(|s| std::str::from_utf8(s).unwrap())
            .collect()
    }

    #[test]
    fn statements_end_at_top_level_semicolons() {
        assert_eq!(split("select 1; select 2"), ["select 1", "select 2"]);
        assert_eq!(split("select 1;"), ["select 1"]);
        assert_eq!(
            split("  -- lead\n select 1 /* tail */ ;\n\tinsert into t values (2)  "),
            ["select 1", "insert into t values (2)"]
        );
        assert_eq!(
            split("select ';', \";\", $$;$$, E'\\';' /* ; */ -- ;\n; select 2"),
            ["select ';', \";\", $$;$$, E'\\';'", "select 2"]
        );
        // Parentheses keep a `;` inside (the server refuses such a text whole).
        assert_eq!(
            split("select (1; 2); select 3"),
            ["select (1; 2)", "select 3"]
        );
    }

    #[test]
    fn empty_statements_are_skipped() {
        assert!(split("").is_empty());
        assert!(split(" ; ;; -- c\n /* d */ ;").is_empty());
        assert_eq!(split(";;select 1;;"), ["select 1"]);
    }

    #[test]
    fn the_text_ends_at_nul() {
        assert_eq!(split("select 1\0"), ["select 1"]);
        assert_eq!(
            split("select 1; select 2\0select 3"),
            ["select 1", "select 2"]
        );
    }

    #[test]
    fn routine_bodies_in_standard_form_are_one_statement() {
        let create = "CREATE OR REPLACE FUNCTION f(a int) RETURNS int LANGUAGE sql \
                      BEGIN ATOMIC SELECT 1; SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END; END";
        assert_eq!(
            split(&format!("{create}; select f(1)")),
            [create, "select f(1)"]
        );
        let procedure = "create procedure p() begin atomic insert into t values (1); end";
        assert_eq!(split(&format!("{procedure};")), [procedure]);
        // Elsewhere BEGIN and END are transaction control.
        assert_eq!(
            split("begin; select 1; end; create table t (begin int); select 2"),
            [
                "begin",
                "select 1",
                "end",
                "create table t (begin int)",
                "select 2"
            ]
        );
        // A function body in a string has no blocks to count.
        assert_eq!(
            split("create function f() returns int as $$ begin return 1; end $$ language plpgsql; select 1"),
            [
                "create function f() returns int as $$ begin return 1; end $$ language plpgsql",
                "select 1"
            ]
        );
    }
}
