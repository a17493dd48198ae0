//! The admin command language: a handful of PgBouncer-style statements.
//!
//! Keywords are case-insensitive; a pool name is a bare word (kept as written, since pool
//! names are case-sensitive in `pgdog.toml`) or a double-quoted identifier (`""` escapes a
//! quote). One query may hold several statements separated by `;`. The input comes from
//! anyone who can reach the admin port, so nothing here panics or allocates without bound
//! beyond the input's own size (see the fuzz target `admin_parse`).

use std::fmt;

/// One admin statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW MIRROR READINESS [database]`
    ShowMirrorReadiness {
        database: Option<String>,
    },
    /// `SHOW MIRROR STATS`
    ShowMirrorStats,
    /// `SHOW MIRROR QUERIES [database]`
    ShowMirrorQueries {
        database: Option<String>,
    },
    ShowPools,
    /// `SHOW STATS`: PgBouncer's request, transaction and byte totals per database.
    ShowStats,
    /// `SHOW PREPARED_STATEMENTS`: transaction mode's statements.
    ShowPreparedStatements,
    ShowClients,
    ShowServers,
    ShowConfig,
    ShowPlugins,
    ShowVersion,
    /// `SHOW HELP` / `HELP`
    Help,
    Disable {
        pool: String,
    },
    Enable {
        pool: String,
    },
    Kill {
        pool: String,
    },
    /// `PAUSE [pool]`: every pool when none is named.
    Pause {
        pool: Option<String>,
    },
    Resume {
        pool: Option<String>,
    },
    ResetMirrorStats,
    Reload,
    Shutdown,
}

impl Command {
    /// Whether the command changes something (those are logged).
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Command::Disable { .. }
                | Command::Enable { .. }
                | Command::Kill { .. }
                | Command::Pause { .. }
                | Command::Resume { .. }
                | Command::ResetMirrorStats
                | Command::Reload
                | Command::Shutdown
        )
    }
}

/// Every statement, for help and for the error an unknown one gets.
pub const USAGE: &[&str] = &[
    "SHOW MIRROR READINESS [database]",
    "SHOW MIRROR STATS",
    "SHOW POOLS",
    "SHOW CLIENTS",
    "SHOW SERVERS",
    "SHOW CONFIG",
    "SHOW PLUGINS",
    "SHOW VERSION",
    "SHOW HELP",
    "DISABLE <pool>",
    "ENABLE <pool>",
    "KILL <pool>",
    "PAUSE [pool]",
    "RESUME [pool]",
    "RESET MIRROR STATS",
    "RELOAD",
    "SHUTDOWN",
    "SHOW MIRROR QUERIES [database]",
    "SHOW STATS",
    "SHOW PREPARED_STATEMENTS",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a command we know; carries the statement as typed (shortened).
    Unknown(String),
    /// A command that needs an argument got none.
    MissingArgument { usage: &'static str },
    /// Words after the end of a command.
    Trailing { usage: &'static str, extra: String },
    /// A `"` without its closing `"`.
    UnterminatedQuote,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown(text) => write!(
                f,
                "unknown admin command \"{text}\"; commands: {}",
                USAGE.join(", ")
            ),
            ParseError::MissingArgument { usage } => write!(f, "missing argument; usage: {usage}"),
            ParseError::Trailing { usage, extra } => {
                write!(f, "unexpected \"{extra}\" at the end; usage: {usage}")
            }
            ParseError::UnterminatedQuote => f.write_str("unterminated quoted identifier"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Splits a query into statements at `;` outside double quotes; blank ones are left out.
pub fn statements(query: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in query.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&query[start..]);
    out.retain(|s| !s.trim().is_empty());
    out
}

/// Parses one statement (a trailing `;` is allowed).
pub fn parse(statement: &str) -> Result<Command, ParseError> {
    let text = statement.trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    let words = words(text)?;
    let mut it = words.iter();
    let unknown = || ParseError::Unknown(shorten(text));
    let first = it.next().ok_or_else(unknown)?;
    let kw =
        |w: Option<&Word>, k: &str| w.is_some_and(|w| !w.quoted && w.text.eq_ignore_ascii_case(k));

    let (command, usage) = if kw(Some(first), "show") {
        let what = it.next().ok_or_else(unknown)?;
        if kw(Some(what), "mirror") {
            let next = it.next();
            if kw(next, "readiness") {
                let database = it.next().map(|w| w.text.clone());
                (Command::ShowMirrorReadiness { database }, USAGE[0])
            } else if kw(next, "stats") {
                (Command::ShowMirrorStats, USAGE[1])
            } else if kw(next, "queries") {
                let database = it.next().map(|w| w.text.clone());
                (Command::ShowMirrorQueries { database }, USAGE[17])
            } else {
                return Err(unknown());
            }
        } else {
            let simple = [
                ("pools", Command::ShowPools, USAGE[2]),
                ("clients", Command::ShowClients, USAGE[3]),
                ("servers", Command::ShowServers, USAGE[4]),
                ("config", Command::ShowConfig, USAGE[5]),
                ("plugins", Command::ShowPlugins, USAGE[6]),
                ("version", Command::ShowVersion, USAGE[7]),
                ("help", Command::Help, USAGE[8]),
                ("stats", Command::ShowStats, USAGE[18]),
                (
                    "prepared_statements",
                    Command::ShowPreparedStatements,
                    USAGE[19],
                ),
            ];
            simple
                .into_iter()
                .find(|(k, _, _)| kw(Some(what), k))
                .map(|(_, c, u)| (c, u))
                .ok_or_else(unknown)?
        }
    } else if kw(Some(first), "help") {
        (Command::Help, USAGE[8])
    } else if kw(Some(first), "reset") {
        if kw(it.next(), "mirror") && kw(it.next(), "stats") {
            (Command::ResetMirrorStats, USAGE[14])
        } else {
            return Err(unknown());
        }
    } else if kw(Some(first), "reload") {
        (Command::Reload, USAGE[15])
    } else if kw(Some(first), "shutdown") {
        (Command::Shutdown, USAGE[16])
    } else {
        type Build = fn(String) -> Command;
        let with_pool: [(&str, Build, &'static str); 3] = [
            ("disable", |pool| Command::Disable { pool }, USAGE[9]),
            ("enable", |pool| Command::Enable { pool }, USAGE[10]),
            ("kill", |pool| Command::Kill { pool }, USAGE[11]),
        ];
        type BuildOpt = fn(Option<String>) -> Command;
        let optional_pool: [(&str, BuildOpt, &'static str); 2] = [
            ("pause", |pool| Command::Pause { pool }, USAGE[12]),
            ("resume", |pool| Command::Resume { pool }, USAGE[13]),
        ];
        if let Some((_, build, usage)) = with_pool.iter().find(|(k, _, _)| kw(Some(first), k)) {
            let pool = it.next().ok_or(ParseError::MissingArgument { usage })?;
            (build(pool.text.clone()), *usage)
        } else if let Some((_, build, usage)) =
            optional_pool.iter().find(|(k, _, _)| kw(Some(first), k))
        {
            (build(it.next().map(|w| w.text.clone())), *usage)
        } else {
            return Err(unknown());
        }
    };
    match it.next() {
        None => Ok(command),
        Some(extra) => Err(ParseError::Trailing {
            usage,
            extra: shorten(&extra.text),
        }),
    }
}

struct Word {
    text: String,
    quoted: bool,
}

/// Whitespace-separated words; `"..."` is one word with `""` for a quote.
fn words(text: &str) -> Result<Vec<Word>, ParseError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    None => return Err(ParseError::UnterminatedQuote),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        word.push('"');
                    }
                    Some('"') => break,
                    Some(c) => word.push(c),
                }
            }
            out.push(Word {
                text: word,
                quoted: true,
            });
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(Word {
                text: word,
                quoted: false,
            });
        }
    }
    Ok(out)
}

/// At most 64 characters of user input in an error message.
fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Command {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn every_command() {
        assert_eq!(
            ok("SHOW MIRROR READINESS"),
            Command::ShowMirrorReadiness { database: None }
        );
        assert_eq!(
            ok("show mirror readiness primary;"),
            Command::ShowMirrorReadiness {
                database: Some("primary".into())
            }
        );
        assert_eq!(ok("Show Mirror Stats"), Command::ShowMirrorStats);
        assert_eq!(
            ok("show mirror queries"),
            Command::ShowMirrorQueries { database: None }
        );
        assert_eq!(
            ok("SHOW MIRROR QUERIES shop"),
            Command::ShowMirrorQueries {
                database: Some("shop".into())
            }
        );
        assert_eq!(ok("SHOW POOLS"), Command::ShowPools);
        assert_eq!(ok("show stats"), Command::ShowStats);
        assert_eq!(
            ok("SHOW PREPARED_STATEMENTS"),
            Command::ShowPreparedStatements
        );
        assert_eq!(ok("show clients"), Command::ShowClients);
        assert_eq!(ok("SHOW SERVERS ;"), Command::ShowServers);
        assert_eq!(ok("SHOW CONFIG"), Command::ShowConfig);
        assert_eq!(ok("SHOW PLUGINS"), Command::ShowPlugins);
        assert_eq!(ok("SHOW VERSION"), Command::ShowVersion);
        assert_eq!(ok("help"), Command::Help);
        assert_eq!(ok("SHOW HELP"), Command::Help);
        assert_eq!(
            ok("DISABLE mirror"),
            Command::Disable {
                pool: "mirror".into()
            }
        );
        assert_eq!(
            ok("enable Mirror"),
            Command::Enable {
                pool: "Mirror".into()
            }
        );
        assert_eq!(ok("KILL p"), Command::Kill { pool: "p".into() });
        assert_eq!(ok("PAUSE"), Command::Pause { pool: None });
        assert_eq!(
            ok("pause p"),
            Command::Pause {
                pool: Some("p".into())
            }
        );
        assert_eq!(ok("RESUME"), Command::Resume { pool: None });
        assert_eq!(ok("reset mirror stats;"), Command::ResetMirrorStats);
        assert_eq!(ok("RELOAD"), Command::Reload);
        assert_eq!(ok("  shutdown  ;  "), Command::Shutdown);
        // Every usage line parses once its placeholders are filled in.
        for usage in USAGE {
            let filled = usage.replace("<pool>", "p").replace(" [pool]", "");
            let filled = filled.replace(" [database]", "");
            ok(&filled);
        }
    }

    #[test]
    fn quoted_names() {
        assert_eq!(
            ok(r#"DISABLE "My ""Pool""""#),
            Command::Disable {
                pool: r#"My "Pool""#.into()
            }
        );
        assert_eq!(
            ok(r#"SHOW MIRROR READINESS "a;b""#),
            Command::ShowMirrorReadiness {
                database: Some("a;b".into())
            }
        );
        assert_eq!(parse(r#"KILL "x"#), Err(ParseError::UnterminatedQuote));
        // A quoted keyword is a name, not a keyword.
        assert!(parse(r#""SHOW" POOLS"#).is_err());
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = parse("SELECT 1").unwrap_err();
        assert_eq!(e, ParseError::Unknown("SELECT 1".into()));
        let text = e.to_string();
        assert!(text.contains("SHOW MIRROR READINESS"), "{text}");
        assert!(text.contains("SHUTDOWN"), "{text}");
        assert_eq!(
            parse("DISABLE"),
            Err(ParseError::MissingArgument { usage: USAGE[9] })
        );
        assert!(matches!(
            parse("SHOW POOLS now"),
            Err(ParseError::Trailing { .. })
        ));
        assert!(matches!(parse("SHOW"), Err(ParseError::Unknown(_))));
        assert!(matches!(parse("SHOW MIRROR"), Err(ParseError::Unknown(_))));
        assert!(matches!(parse(""), Err(ParseError::Unknown(_))));
        let long = "x".repeat(500);
        assert!(parse(&long).unwrap_err().to_string().len() < 600);
    }

    #[test]
    fn statement_splitting() {
        assert_eq!(
            statements("SHOW POOLS; SHOW VERSION;"),
            vec!["SHOW POOLS", " SHOW VERSION"]
        );
        assert_eq!(
            statements(r#"KILL "a;b"; RELOAD"#),
            vec![r#"KILL "a;b""#, " RELOAD"]
        );
        assert!(statements(" ; ;").is_empty());
    }

    /// A cheap stand-in for the fuzz target in the normal test run: arbitrary text never
    /// panics.
    #[test]
    fn arbitrary_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet: Vec<char> = " \t\n;\"'aAsShHoOwWpPkKlLé\u{0}日mMiIrReEdD"
            .chars()
            .collect();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 48)) as usize + i) % alphabet.len()])
                .collect();
            for s in statements(&text) {
                let _ = parse(s);
            }
            let _ = parse(&text);
        }
    }
}
