use super::*;

/// The tokens of `sql` as (kind, text) pairs.
fn lex(sql: &[u8]) -> Vec<(Kind, &[u8])> {
    tokens(sql).map(|t| (t.kind, t.text)).collect()
}

/// The tokens of `sql` without white space, as (kind, text) pairs.
fn lex_significant(sql: &str) -> Vec<(Kind, &str)> {
    significant(sql.as_bytes())
        .map(|t| (t.kind, std::str::from_utf8(t.text).unwrap()))
        .collect()
}

/// `sql` is one token of `kind`.
fn one(sql: &str, kind: Kind) {
    assert_eq!(lex(sql.as_bytes()), [(kind, sql.as_bytes())], "{sql:?}");
}

use Kind::*;

#[test]
fn white_space_and_comments() {
    one(" \t\n\r\x0c\x0b ", Space);
    one("-- to the end", LineComment);
    assert_eq!(
        lex(b"-- a\nb"),
        [(LineComment, &b"-- a"[..]), (Space, b"\n"), (Word, b"b")]
    );
    // A carriage return ends a line comment too.
    assert_eq!(lex(b"--a\rb")[0], (LineComment, &b"--a"[..]));
    one("/* a */", BlockComment);
    one("/**/", BlockComment);
    one("/* a /* nested */ still */", BlockComment);
    one("/*/ a */", BlockComment);
    assert_eq!(
        lex(b"/* a */ */"),
        [
            (BlockComment, &b"/* a */"[..]),
            (Space, b" "),
            (Operator, b"*/")
        ]
    );
}

#[test]
fn words_and_keywords() {
    assert_eq!(
        lex_significant("SELECT a$b, _x1, été FROM t"),
        [
            (Word, "SELECT"),
            (Word, "a$b"),
            (Comma, ","),
            (Word, "_x1"),
            (Comma, ","),
            (Word, "été"),
            (Word, "FROM"),
            (Word, "t")
        ]
    );
    let select = tokens(b"SeLeCt").next().unwrap();
    assert!(select.is_keyword("select"));
    assert_eq!(select.keyword().as_deref(), Some(&b"select"[..]));
    assert_eq!(fold_lower(b"MiXed\xc3\x89"), &b"mixed\xc3\x89"[..]);
    assert!(matches!(fold_lower(b"lower"), Cow::Borrowed(_)));
    // A quoted identifier is never a keyword.
    assert!(!tokens(b"\"select\"").next().unwrap().is_keyword("select"));
    let long = "x".repeat(Keyword::MAX + 1);
    assert_eq!(tokens(long.as_bytes()).next().unwrap().keyword(), None);
    assert_eq!(
        first_keyword(b" /* c */ -- d\n Begin;"),
        Some(&b"Begin"[..])
    );
    assert_eq!(first_keyword(b"(select 1)"), None);
    assert_eq!(first_keyword(b""), None);
}

#[test]
fn quoted_identifiers() {
    one(r#""My ""Table""""#, QuotedIdent);
    one(r#"U&"d\0061t""#, QuotedIdent);
    one(r#"u&"x""#, QuotedIdent);
    let name = |sql: &str| {
        tokens(sql.as_bytes())
            .next()
            .unwrap()
            .name()
            .map(|n| std::string::String::from_utf8(n.into_owned()).unwrap())
    };
    assert_eq!(name(r#""a""b c""#).as_deref(), Some(r#"a"b c"#));
    assert_eq!(name(r#""Keep""#).as_deref(), Some("Keep"));
    assert_eq!(name("Fold").as_deref(), Some("fold"));
    assert_eq!(name(r#""""#), None, "empty");
    assert_eq!(name(r#""open"#), None, "unterminated");
    assert_eq!(
        name(r#""open"""#),
        None,
        "unterminated after a doubled quote"
    );
    assert_eq!(name(r#"U&"x""#), None, "not decoded");
    assert_eq!(name("'s'"), None);
}

#[test]
fn strings() {
    one("'it''s'", String);
    one("''", String);
    // standard_conforming_strings: a backslash is an ordinary character...
    assert_eq!(
        lex_significant(r"'a\' 'b'"),
        [(String, r"'a\'"), (String, "'b'")]
    );
    // ...except in an E'' string, where it escapes the quote.
    one(r"E'a\'b''c'", String);
    one(r"e'\\'", String);
    one("N'national'", String);
    one("U&'d\\0061t'", String);
    one("B'1010'", String);
    one("x'1F'", String);
    // A bit string ends at the first quote.
    assert_eq!(lex(b"B'1''0'"), [(String, &b"B'1'"[..]), (String, b"'0'")]);
    // A prefix is one letter right before the quote.
    assert_eq!(
        lex_significant("be'x' u&y"),
        [
            (Word, "be"),
            (String, "'x'"),
            (Word, "u"),
            (Operator, "&"),
            (Word, "y")
        ]
    );
    // Adjacent constants the server joins stay two tokens.
    assert_eq!(
        lex_significant("'a'\n'b'"),
        [(String, "'a'"), (String, "'b'")]
    );
}

#[test]
fn dollar_quotes_and_parameters() {
    one("$$it's$$", String);
    one("$fn$ a $$ b $x$ c $fn$", String);
    one("$é$x$é$", String);
    one("$_1$body$_1$", String);
    // The body ends at the first copy of the delimiter, even one sharing its `$` with
    // another tag before it.
    assert_eq!(
        lex(b"$a$x$b$a$y"),
        [(String, &b"$a$x$b$a$"[..]), (Word, b"y")]
    );
    one("$1", Param);
    one("$12", Param);
    one("$1abc", Param);
    assert_eq!(
        lex_significant("$1::int+$2"),
        [
            (Param, "$1"),
            (Punct, "::"),
            (Word, "int"),
            (Operator, "+"),
            (Param, "$2")
        ]
    );
    // A `$` that starts nothing is a byte of its own; the tag cannot start with a digit.
    assert_eq!(
        lex(b"$a b"),
        [
            (Other, &b"$"[..]),
            (Word, b"a"),
            (Space, b" "),
            (Word, b"b")
        ]
    );
    assert_eq!(lex(b"$"), [(Other, &b"$"[..])]);
    // `$` inside a word is part of it, so it opens no string.
    assert_eq!(lex_significant("a$b$ c"), [(Word, "a$b$"), (Word, "c")]);
}

#[test]
fn numbers() {
    for n in [
        "42",
        "1.5",
        "1.5e3",
        "1.5E-3",
        "2e+10",
        ".5",
        "1.",
        "0x1F",
        "0o17",
        "0b101",
        "1_000",
        "1_000.000_1",
    ] {
        one(n, Number);
    }
    // Trailing junk stays with the number (PostgreSQL 15+ refuses it as one error).
    one("123abc", Number);
    one("1e", Number);
    assert_eq!(lex(b"1e+"), [(Number, &b"1e"[..]), (Operator, b"+")]);
    assert_eq!(
        lex(b"1..10"),
        [(Number, &b"1"[..]), (Punct, b".."), (Number, b"10")]
    );
    assert_eq!(lex(b"t.5"), [(Word, &b"t"[..]), (Number, b".5")]);
    assert_eq!(
        lex(b"1$a$b$a$"),
        [(Number, &b"1"[..]), (String, b"$a$b$a$")]
    );
}

#[test]
fn operators_and_punctuation() {
    assert_eq!(
        lex_significant("a<=b->>'k' @> c || d != e <> f ?| g"),
        [
            (Word, "a"),
            (Operator, "<="),
            (Word, "b"),
            (Operator, "->>"),
            (String, "'k'"),
            (Operator, "@>"),
            (Word, "c"),
            (Operator, "||"),
            (Word, "d"),
            (Operator, "!="),
            (Word, "e"),
            (Operator, "<>"),
            (Word, "f"),
            (Operator, "?|"),
            (Word, "g")
        ]
    );
    // A trailing + or - is split off unless the operator is PostgreSQL's own.
    assert_eq!(
        lex(b"=-1"),
        [(Operator, &b"="[..]), (Operator, b"-"), (Number, b"1")]
    );
    assert_eq!(lex(b"@-1"), [(Operator, &b"@-"[..]), (Number, b"1")]);
    // A comment inside an operator run ends the operator.
    assert_eq!(
        lex(b"+/*c*/-- d"),
        [
            (Operator, &b"+"[..]),
            (BlockComment, b"/*c*/"),
            (LineComment, b"-- d")
        ]
    );
    assert_eq!(
        lex_significant("a::b := c..d [1]; (x, y)"),
        [
            (Word, "a"),
            (Punct, "::"),
            (Word, "b"),
            (Punct, ":="),
            (Word, "c"),
            (Punct, ".."),
            (Word, "d"),
            (Punct, "["),
            (Number, "1"),
            (Punct, "]"),
            (Semicolon, ";"),
            (OpenParen, "("),
            (Word, "x"),
            (Comma, ","),
            (Word, "y"),
            (CloseParen, ")")
        ]
    );
    assert_eq!(
        lex(b"\\{\0"),
        [(Other, &b"\\"[..]), (Other, b"{"), (Other, b"\0")]
    );
}

#[test]
fn unterminated_tokens_run_to_the_end() {
    for (sql, kind) in [
        ("'open", String),
        ("'open''", String),
        (r"E'open\'", String),
        (r"E'\", String),
        ("B'01", String),
        ("U&'x", String),
        ("\"open", QuotedIdent),
        ("U&\"open", QuotedIdent),
        ("$$open", String),
        ("$tag$open $tag", String),
        ("/* open", BlockComment),
        ("/* a /* b */", BlockComment),
        ("/*", BlockComment),
        ("-- open", LineComment),
    ] {
        one(sql, kind);
    }
}

#[test]
fn bytes_that_are_not_utf8() {
    assert_eq!(
        lex(b"select \xff\xfe, '\xc3(', \"\x80\""),
        [
            (Word, &b"select"[..]),
            (Space, b" "),
            (Word, b"\xff\xfe"),
            (Comma, b","),
            (Space, b" "),
            (String, b"'\xc3('"),
            (Comma, b","),
            (Space, b" "),
            (QuotedIdent, b"\"\x80\"")
        ]
    );
}

#[test]
fn spans_cover_the_text() {
    let sql = b"SELECT /* x /* y */ */ $1::int, 'a''b', $q$ $ $q$ FROM \"T\" -- end";
    let mut at = 0;
    for t in tokens(sql) {
        assert_eq!(t.start, at);
        assert_eq!(t.text, &sql[t.start..t.end()]);
        at = t.end();
    }
    assert_eq!(at, sql.len());
}
