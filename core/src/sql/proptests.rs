//! Property tests of the lexer and of what is built on it (the fingerprint's are with it,
//! on the strategies here). Case counts are bounded so the
//! whole suite takes a few seconds in a debug build; CI runs it with the other unit tests
//! (`cargo nextest run --workspace`). The `sql_lexer` fuzz target in `core/fuzz` checks the
//! same invariants on arbitrary bytes for as long as it is left running.

use proptest::prelude::*;

use super::*;

/// Bytes that mean something to the lexer, so that random texts hit its rules often.
const MEANINGFUL: &[u8] = b"'\"$-/*;(),.:=+<>eEuUbBxXnN&\\01_a \n\r\t\x0b\0\xc3\xa9\xff";

/// Any bytes, half the time drawn from [`MEANINGFUL`].
pub(crate) fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..160),
        prop::collection::vec(prop::sample::select(MEANINGFUL), 0..160),
    ]
}

/// A word that is not one of the keywords that open a block in a routine body.
pub(crate) fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z_\u{e9}][a-zA-Z0-9_$\u{e9}]{0,8}".prop_filter("block keyword", |w| {
        !matches!(
            w.to_ascii_lowercase().as_str(),
            "create" | "begin" | "case" | "end"
        )
    })
}

/// A well-formed literal: string constants of every form, numbers, parameters.
pub(crate) fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "'([^'\\x00]|''){0,8}'",
        "[eE]'([^'\\\\\\x00]|''|\\\\[^\\x00]){0,8}'",
        "[nN]'([^'\\x00]|''){0,6}'",
        "U&'([^'\\x00]|''){0,6}'",
        "[bBxX]'[0-9a-f]{0,8}'",
        ("[a-z_]{0,3}", "[^$\\x00]{0,10}").prop_map(|(tag, body)| format!("${tag}${body}${tag}$")),
        "[0-9]{1,4}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
        "\\.[0-9]{1,3}",
        "0x[0-9A-F]{1,4}",
        "\\$[1-9][0-9]{0,2}",
    ]
}

/// A well-formed token of any kind, with its kind; comments included.
pub(crate) fn piece() -> impl Strategy<Value = (String, Kind)> {
    prop_oneof![
        3 => word().prop_map(|w| (w, Kind::Word)),
        3 => literal().prop_map(|l| {
            let kind = match l.as_bytes()[0] {
                b'$' if l.as_bytes().get(1).is_some_and(u8::is_ascii_digit) => Kind::Param,
                b'0'..=b'9' | b'.' => Kind::Number,
                _ => Kind::String,
            };
            (l, kind)
        }),
        1 => "\"([^\"\\x00]|\"\"){0,8}\"".prop_map(|q| (q, Kind::QuotedIdent)),
        2 => prop::sample::select(&["+", "-", "*", "/", "<=", "<>", "!=", "->>", "@>", "||", "?|", "~*"][..])
            .prop_map(|o| (o.to_string(), Kind::Operator)),
        1 => prop::sample::select(&[".", "::", "[", "]", ":=", ".."][..])
            .prop_map(|p| (p.to_string(), Kind::Punct)),
        1 => Just((",".to_string(), Kind::Comma)),
        1 => "/\\*[a-z ]{0,5}(/\\*[a-z ]{0,5}\\*/)?[a-z ]{0,5}\\*/".prop_map(|c| (c, Kind::BlockComment)),
        1 => "--[^\n\r\\x00]{0,10}".prop_map(|c| (c, Kind::LineComment)),
    ]
}

/// A statement of well-formed tokens, one per line (a line comment ends at its line),
/// starting with a word; no `;` or parentheses.
pub(crate) fn statement() -> impl Strategy<Value = Vec<(String, Kind)>> {
    (word(), prop::collection::vec(piece(), 0..8)).prop_map(|(first, mut rest)| {
        rest.insert(0, (first, Kind::Word));
        rest
    })
}

pub(crate) fn join(pieces: &[(String, Kind)], separator: &str) -> String {
    pieces
        .iter()
        .map(|(text, _)| text.as_str())
        .collect::<Vec<_>>()
        .join(separator)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn tokens_cover_the_text_end_to_end(text in text()) {
        let mut at = 0;
        for t in tokens(&text) {
            prop_assert_eq!(t.start, at);
            prop_assert!(!t.text.is_empty());
            prop_assert_eq!(t.text, &text[t.start..t.end()]);
            at = t.end();
        }
        prop_assert_eq!(at, text.len());
    }

    #[test]
    fn a_well_formed_token_lexes_as_itself((text, kind) in piece()) {
        let lexed: Vec<_> = tokens(text.as_bytes()).map(|t| (t.kind, t.text)).collect();
        prop_assert_eq!(lexed, vec![(kind, text.as_bytes())]);
    }

    /// What follows a complete text (and a line break) does not change its tokens.
    #[test]
    fn a_complete_text_lexes_the_same_whatever_follows(
        a in prop::collection::vec(piece(), 0..10),
        b in prop::collection::vec(piece(), 0..10),
        junk in text(),
    ) {
        let a = join(&a, "\n");
        let b = join(&b, "\n");
        let alone: Vec<_> = significant(a.as_bytes()).collect();
        let before_junk = [a.as_bytes(), b"\n", &junk].concat();
        let with_junk: Vec<_> = significant(&before_junk).take(alone.len()).collect();
        prop_assert_eq!(&alone, &with_junk);

        let both = format!("{a}\n{b}");
        let shift = a.len() + 1;
        let expected: Vec<_> = alone
            .iter()
            .map(|t| (t.kind, t.start, t.text))
            .chain(significant(b.as_bytes()).map(|t| (t.kind, t.start + shift, t.text)))
            .collect();
        let lexed: Vec<_> = significant(both.as_bytes()).map(|t| (t.kind, t.start, t.text)).collect();
        prop_assert_eq!(lexed, expected);
    }

    #[test]
    fn statements_are_sub_slices_in_order(text in text()) {
        let base = text.as_ptr() as usize;
        let mut at = 0;
        for s in statements(&text) {
            let start = s.as_ptr() as usize - base;
            prop_assert!(start >= at && start + s.len() <= text.len());
            prop_assert!(!s.is_empty());
            prop_assert!(tokens(s).next().is_some_and(|t| !t.is_trivia()));
            // A statement cut out is cut no further.
            prop_assert_eq!(statements(s).collect::<Vec<_>>(), vec![s]);
            at = start + s.len();
        }
    }

    /// Statements joined by `;` come back one by one, without the comments around them.
    #[test]
    fn statements_joined_by_semicolons_come_back(
        list in prop::collection::vec(statement(), 1..5),
    ) {
        let text = list.iter().map(|s| join(s, "\n")).collect::<Vec<_>>().join("\n;\n");
        let expected: Vec<String> = list
            .iter()
            .map(|s| {
                let significant = |p: &&(String, Kind)| {
                    !matches!(p.1, Kind::LineComment | Kind::BlockComment)
                };
                let last = s.iter().rposition(|p| significant(&p)).unwrap();
                join(&s[..=last], "\n")
            })
            .collect();
        let got: Vec<_> = statements(text.as_bytes())
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn readers_take_any_text(text in text()) {
        let class = classify(&text);
        let each = statements(&text).map(classify).max().unwrap_or(Class::Read);
        prop_assert_eq!(class, each);
        let _ = copy_from_stdin(&text);
        if let Some(Deallocation::One(name)) = deallocation(&text) {
            prop_assert!(!name.is_empty());
        }
        let _ = first_keyword(&text);
    }

    #[test]
    fn a_deallocated_name_is_read_as_the_server_keeps_it(
        name in prop_oneof![
            word().prop_map(|w| (w.clone(), w.to_ascii_lowercase())),
            "([^\"\\x00]|\"\"){1,8}".prop_map(|inner| {
                (format!("\"{inner}\""), inner.replace("\"\"", "\""))
            }),
        ],
        prepare in any::<bool>(),
    ) {
        let (written, kept) = name;
        prop_assume!(!written.eq_ignore_ascii_case("all") && !written.eq_ignore_ascii_case("prepare"));
        let sql = format!("DEALLOCATE {}{written};", if prepare { "PREPARE " } else { "" });
        prop_assert_eq!(deallocation(sql.as_bytes()), Some(Deallocation::One(kept.into_bytes())));
    }
}

/// `word` with each letter in either case.
fn any_case(word: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| {
        word.chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

/// What may separate two tokens: blanks, a block comment, a line comment.
fn gap() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(" ".to_string()),
        Just("\n\t".to_string()),
        "/\\*[a-z ]{0,6}(/\\*[a-z ]{0,4}\\*/)?\\*/".prop_map(|c| format!(" {c} ")),
        "--[a-z ]{0,8}".prop_map(|c| format!(" {c}\n")),
    ]
}

/// A data-modifying statement a CTE may hold, with `RETURNING`.
fn modifying() -> impl Strategy<Value = String> {
    prop_oneof![
        (any_case("insert"), literal())
            .prop_map(|(v, l)| format!("{v} INTO t VALUES ({l}) RETURNING *")),
        (any_case("update"), literal()).prop_map(|(v, l)| format!("{v} t SET a = {l} RETURNING *")),
        (any_case("delete"), literal())
            .prop_map(|(v, l)| format!("{v} FROM t WHERE a = {l} RETURNING *")),
        any_case("merge")
            .prop_map(|v| format!("{v} INTO t USING s ON true WHEN MATCHED THEN DELETE")),
    ]
}

/// A read the classifier must take as one: keywords of writes only inside literals,
/// quoted identifiers and comments.
fn harmless() -> impl Strategy<Value = String> {
    prop_oneof![
        literal(),
        prop::sample::select(&["insert", "update", "delete", "drop", "for update", "into"][..])
            .prop_flat_map(|k| {
                prop_oneof![
                    Just(format!("'{k}'")),
                    Just(format!("\"{k}\"")),
                    Just(format!("$q${k}$q$")),
                    Just(format!("/* {k} */ 1")),
                    Just(format!("-- {k}\n 1")),
                    Just(format!("E'\\' {k}'")),
                ]
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// `mirror_statements = "reads"` must never take a statement with a data-modifying
    /// CTE for a read, wherever the CTE stands among others and however it is written.
    #[test]
    fn a_data_modifying_cte_is_never_a_read(
        with in any_case("with"),
        recursive in any::<bool>(),
        before in prop::collection::vec(literal(), 0..3),
        write in modifying(),
        after in prop::collection::vec(literal(), 0..2),
        g in gap(),
        nested in any::<bool>(),
    ) {
        let mut ctes: Vec<String> = before
            .iter()
            .enumerate()
            .map(|(i, l)| format!("r{i} AS (SELECT {l})"))
            .collect();
        let write = if nested {
            // Inside a CTE of a CTE.
            format!("w AS (WITH x AS ({write}){g}SELECT * FROM x)")
        } else {
            format!("w AS ({write})")
        };
        ctes.push(write);
        ctes.extend(after.iter().enumerate().map(|(i, l)| format!("s{i} AS (SELECT {l})")));
        let sql = format!(
            "{with}{g}{}{}{g}SELECT * FROM w",
            if recursive { "RECURSIVE " } else { "" },
            ctes.join(&format!(",{g}")),
        );
        prop_assert_ne!(classify(sql.as_bytes()), Class::Read, "{}", sql);
    }

    /// A locking clause or `INTO` makes a `SELECT` no read.
    #[test]
    fn a_select_that_locks_or_creates_a_table_is_never_a_read(
        select in any_case("select"),
        lit in literal(),
        g in gap(),
        lock in prop::sample::select(&["update", "no key update", "share", "key share"][..]),
        tail in prop::sample::select(&["", " OF t", " NOWAIT", " SKIP LOCKED"][..]),
        into in any::<bool>(),
    ) {
        let sql = if into {
            format!("{select} {lit}{g}INTO{g}new_table FROM t")
        } else {
            format!("{select} {lit} FROM t WHERE a = {lit}{g}FOR{g}{}{tail}", lock.to_uppercase())
        };
        prop_assert_ne!(classify(sql.as_bytes()), Class::Read, "{}", sql);
    }

    /// Keywords of writes inside literals, quoted identifiers or comments do not make a
    /// read a write; one write statement after (or before) it in the same text does.
    #[test]
    fn only_the_statements_themselves_decide(
        select in any_case("select"),
        columns in prop::collection::vec(harmless(), 1..4),
        g in gap(),
        write in modifying(),
        write_first in any::<bool>(),
    ) {
        let read = format!("{select}{g}{} FROM t", columns.join(", "));
        prop_assert_eq!(classify(read.as_bytes()), Class::Read, "{}", read);
        let both = if write_first {
            format!("{write};{g}{read}")
        } else {
            format!("{read};{g}{write}")
        };
        prop_assert!(classify(both.as_bytes()).may_write(), "{}", both);
    }
}
