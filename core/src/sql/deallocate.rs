//! `DEALLOCATE` and `DISCARD ALL`: what a simple Query makes the server forget of its
//! prepared statements.

use super::lexer::{significant, Kind, Token};
use super::query_text;

/// What a simple Query makes the server forget of its prepared statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deallocation {
    All,
    /// One statement, by its name as the server keeps it.
    One(Vec<u8>),
}

impl Deallocation {
    /// The statement forgotten, `None` for all of them.
    pub fn name(&self) -> Option<&[u8]> {
        match self {
            Deallocation::All => None,
            Deallocation::One(name) => Some(name),
        }
    }
}

/// `DISCARD ALL`, `DEALLOCATE [PREPARE] ALL` and `DEALLOCATE [PREPARE] name` (a name as
/// the server keeps it: see [`Token::name`]), after any comments,
/// followed by nothing but `;`. A query that starts with `DEALLOCATE` and is not
/// understood (no name, an empty or unterminated quoted name, anything after the name)
/// forgets everything: a caller's only cost for forgetting too much is to stop repairing
/// a statement. Other queries forget nothing, multi-statement ones included.
pub fn deallocation(text: &[u8]) -> Option<Deallocation> {
    let mut tokens = significant(query_text(text)).peekable();
    let first = tokens.next()?;
    if first.is_keyword("discard") {
        return tokens
            .next()
            .filter(|t| t.is_keyword("all"))
            .map(|_| Deallocation::All);
    }
    if !first.is_keyword("deallocate") {
        return None;
    }
    let not_end = |t: &Token| t.kind != Kind::Semicolon;
    let Some(mut target) = tokens.next_if(not_end) else {
        return Some(Deallocation::All);
    };
    // `DEALLOCATE PREPARE` alone deallocates the statement named "prepare".
    if target.is_keyword("prepare") {
        if let Some(name) = tokens.next_if(not_end) {
            target = name;
        }
    }
    if !tokens.all(|t| t.kind == Kind::Semicolon) || target.is_keyword("all") {
        return Some(Deallocation::All);
    }
    let name = target.name().map(|name| name.into_owned());
    Some(name.map_or(Deallocation::All, Deallocation::One))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deallocations_are_read_as_the_server_reads_them() {
        use Deallocation::{All, One};
        let one = |name: &[u8]| Some(One(name.to_vec()));
        for (sql, expected) in [
            (&b"DEALLOCATE s1\0"[..], one(b"s1")),
            (b"  deallocate Prepare S1 ;", one(b"s1")),
            (b"-- why\n/* app */ DEALLOCATE s1", one(b"s1")),
            (b"DEALLOCATE \"S1\"", one(b"S1")),
            (b"DEALLOCATE \"a\"\"b c\"", one(b"a\"b c")),
            (b"DEALLOCATE prepare", one(b"prepare")),
            (b"DEALLOCATE ALL", Some(All)),
            (b"deallocate prepare all;", Some(All)),
            (b"DISCARD ALL", Some(All)),
            (b"DISCARD PLANS", None),
            (b"SELECT 1", None),
            (b"", None),
            // Not understood: everything is forgotten (repairs stop; nothing runs wrong).
            (b"DEALLOCATE s1; SELECT 1", Some(All)),
            (b"DEALLOCATE \"s1", Some(All)),
            (b"DEALLOCATE \"\"", Some(All)),
            (b"DEALLOCATE", Some(All)),
        ] {
            assert_eq!(
                deallocation(sql),
                expected,
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
    }

    /// What the lexer adds to the word reader this replaces: nested comments, comments
    /// after the name, and names that need quoting.
    #[test]
    fn deallocations_follow_the_lexical_rules() {
        use Deallocation::{All, One};
        let one = |name: &[u8]| Some(One(name.to_vec()));
        for (sql, expected) in [
            (&b"/* a /* b */ c */ DEALLOCATE s1"[..], one(b"s1")),
            (b"DEALLOCATE s1 -- done\n;", one(b"s1")),
            (b"DEALLOCATE PREPARE;", one(b"prepare")),
            (b"DEALLOCATE \"all\"", one(b"all")),
            (b"DEALLOCATE \"a;b\";", one(b"a;b")),
            (b"DEALLOCATE s\xc3\x89", one(b"s\xc3\x89")),
            (b"discard/**/all", Some(All)),
            (b"DISCARD \"all\"", None),
            (b"DEALLOCATE U&\"s1\"", Some(All)),
            (b"DEALLOCATE 's1'", Some(All)),
            (b"DEALLOCATE s1 s2", Some(All)),
            (b"SELECT 1; DEALLOCATE s1", None),
        ] {
            assert_eq!(
                deallocation(sql),
                expected,
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
        assert_eq!(one(b"x").unwrap().name(), Some(&b"x"[..]));
        assert_eq!(All.name(), None);
    }

    /// Whatever a client sends as a simple query: no panic, and a name read is never empty.
    #[test]
    fn deallocation_takes_any_input() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let alphabet = b"deallocatepreparADISCRL \";\"\t\nsx1\0\xff";
        for _ in 0..20_000 {
            let mut sql = if rng.gen_bool(0.5) {
                b"DEALLOCATE ".to_vec()
            } else {
                Vec::new()
            };
            let len = rng.gen_range(0..24);
            sql.extend((0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]));
            if let Some(Deallocation::One(name)) = deallocation(&sql) {
                assert!(!name.is_empty(), "{sql:?}");
            }
        }
    }
}
