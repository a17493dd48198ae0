//! Mirror errors by SQLSTATE class (3.1.0): what kind of difference an error on the mirror
//! reveals, so that a policy can say more than "5 errors".
//!
//! Only the mirror's own query errors are classed (an error the primary had too, with the
//! same SQLSTATE, is not the mirror's). The classes are names in [`Extensions`], the same
//! on every side of the boundary, so this module defines them once:
//!
//! | class | SQLSTATEs | what it usually means |
//! |---|---|---|
//! | `schema_drift` | `42P01`, `42703`, `42883`, other `42xxx` | a table, column or function missing or different on the mirror |
//! | `permissions` | `42501` | a grant missing on the mirror |
//! | `capacity` | `53xxx` | the mirror ran out of connections, memory or disk |
//! | `concurrency` | `40001`, `40P01` | serialization failures, deadlocks |
//! | `data` | `22xxx`, `23xxx` | data or constraint differences |
//! | `configuration` | `55xxx`, `58xxx`, `XXxxx` | object state, system and internal errors |
//! | `other` | anything else, or no SQLSTATE | |
//!
//! Schema drift and permission errors are deterministic: a statement that fails that way
//! on the mirror fails for every caller, so a policy may block on them whatever the rate.
//!
//! Extension names (on [`crate::DatabaseStats`] and [`crate::DatabaseReport`]), all
//! optional:
//! * `errors.class.<class>` (`Count`): mirror-only query errors of that class;
//! * `errors.class.<class>.worst` (`Count`): the fingerprint with the most of them, with
//!   `.worst_count` (`Count`), `.worst_text` (`Text`, normalised) and `.worst_sqlstate`
//!   (`Text`);
//! * `errors.sqlstate.<CODE>` (`Count`): mirror-only query errors per SQLSTATE.

use crate::{ExtensionValue, Extensions};

/// A class of SQLSTATEs (see the module docs).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    SchemaDrift,
    Permissions,
    Capacity,
    Concurrency,
    Data,
    Configuration,
    Other,
}

impl ErrorClass {
    /// Every class, in the order reports list them.
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::SchemaDrift,
        ErrorClass::Permissions,
        ErrorClass::Capacity,
        ErrorClass::Concurrency,
        ErrorClass::Data,
        ErrorClass::Configuration,
        ErrorClass::Other,
    ];

    /// The class of a SQLSTATE (`Other` when unknown or empty).
    pub fn of_sqlstate(code: &str) -> Self {
        let code = code.as_bytes();
        match code {
            b"42501" => Self::Permissions,
            [b'4', b'2', ..] => Self::SchemaDrift,
            [b'5', b'3', ..] => Self::Capacity,
            b"40001" | b"40P01" => Self::Concurrency,
            [b'2', b'2', ..] | [b'2', b'3', ..] => Self::Data,
            [b'5', b'5', ..] | [b'5', b'8', ..] | [b'X', b'X', ..] => Self::Configuration,
            _ => Self::Other,
        }
    }

    /// The name in extensions and metric labels (`schema_drift`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SchemaDrift => "schema_drift",
            Self::Permissions => "permissions",
            Self::Capacity => "capacity",
            Self::Concurrency => "concurrency",
            Self::Data => "data",
            Self::Configuration => "configuration",
            Self::Other => "other",
        }
    }

    /// The words for reports (`schema drift`).
    pub fn label(self) -> &'static str {
        match self {
            Self::SchemaDrift => "schema drift",
            Self::Permissions => "permissions",
            Self::Capacity => "capacity",
            Self::Concurrency => "concurrency",
            Self::Data => "data",
            Self::Configuration => "configuration",
            Self::Other => "other",
        }
    }

    /// The class named `name` (as [`ErrorClass::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Errors that recur for every caller of the statement: one is enough to block.
    pub fn deterministic(self) -> bool {
        matches!(self, Self::SchemaDrift | Self::Permissions)
    }
}

/// What a few SQLSTATEs mean, for reasons a DBA reads (`None` for the rest).
pub fn sqlstate_meaning(code: &str) -> Option<&'static str> {
    Some(match code {
        "42P01" => "undefined table",
        "42703" => "undefined column",
        "42883" => "undefined function",
        "42704" => "undefined object",
        "42P02" => "undefined parameter",
        "42601" => "syntax error",
        "42804" => "datatype mismatch",
        "42501" => "insufficient privilege",
        "53100" => "disk full",
        "53200" => "out of memory",
        "53300" => "too many connections",
        "40001" => "serialization failure",
        "40P01" => "deadlock detected",
        "22012" => "division by zero",
        "22P02" => "invalid text representation",
        "23505" => "unique violation",
        "23503" => "foreign key violation",
        "23502" => "not-null violation",
        "55P03" => "lock not available",
        "55000" => "object not in prerequisite state",
        "58P01" => "undefined file",
        "XX000" => "internal error",
        _ => return None,
    })
}

/// The fingerprint with the most errors of a class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorstFingerprint {
    pub fingerprint: u64,
    pub count: u64,
    /// Normalised text (may be empty when unknown).
    pub text: String,
    pub sqlstate: String,
}

/// The mirror-only errors of one class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassErrors {
    pub class: ErrorClass,
    pub count: u64,
    pub worst: Option<WorstFingerprint>,
    /// `(SQLSTATE, count)` of this class, most frequent first.
    pub sqlstates: Vec<(String, u64)>,
}

impl ClassErrors {
    /// `schema drift 3 (42P01 undefined table 3; worst 5ee9e5fc5042ed32 "select …")`.
    pub fn describe(&self) -> String {
        let codes: Vec<String> = self
            .sqlstates
            .iter()
            .map(|(code, n)| match sqlstate_meaning(code) {
                Some(meaning) => format!("{code} {meaning} {n}"),
                None => format!("{code} {n}"),
            })
            .collect();
        let mut detail = codes.join(", ");
        if let Some(w) = &self.worst {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&format!(
                "worst {:016x} \"{}\" ({})",
                w.fingerprint,
                shorten(&w.text, 60),
                w.count
            ));
        }
        if detail.is_empty() {
            format!("{} {}", self.class.label(), self.count)
        } else {
            format!("{} {} ({detail})", self.class.label(), self.count)
        }
    }
}

fn shorten(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().count() > chars {
        out.push('…');
    }
    out
}

fn name(class: ErrorClass, field: &str) -> String {
    if field.is_empty() {
        format!("errors.class.{}", class.as_str())
    } else {
        format!("errors.class.{}.{field}", class.as_str())
    }
}

/// Writes `classes` (and their SQLSTATEs) into `ext`.
pub fn write_classes(ext: &mut Extensions, classes: &[ClassErrors]) {
    for c in classes {
        ext.set(&name(c.class, ""), ExtensionValue::Count(c.count));
        if let Some(w) = &c.worst {
            ext.set(
                &name(c.class, "worst"),
                ExtensionValue::Count(w.fingerprint),
            );
            ext.set(
                &name(c.class, "worst_count"),
                ExtensionValue::Count(w.count),
            );
            ext.set(
                &name(c.class, "worst_text"),
                ExtensionValue::Text(w.text.as_str().into()),
            );
            ext.set(
                &name(c.class, "worst_sqlstate"),
                ExtensionValue::Text(w.sqlstate.as_str().into()),
            );
        }
        for (code, n) in &c.sqlstates {
            ext.set(
                &format!("errors.sqlstate.{code}"),
                ExtensionValue::Count(*n),
            );
        }
    }
}

/// The classes in `ext` with at least one error, in [`ErrorClass::ALL`]'s order.
pub fn read_classes(ext: &Extensions) -> Vec<ClassErrors> {
    let mut out = Vec::new();
    for class in ErrorClass::ALL {
        let Some(count) = ext.count(&name(class, "")).filter(|&n| n > 0) else {
            continue;
        };
        let worst = ext
            .count(&name(class, "worst"))
            .map(|fingerprint| WorstFingerprint {
                fingerprint,
                count: ext.count(&name(class, "worst_count")).unwrap_or(0),
                text: ext
                    .text(&name(class, "worst_text"))
                    .unwrap_or("")
                    .to_string(),
                sqlstate: ext
                    .text(&name(class, "worst_sqlstate"))
                    .unwrap_or("")
                    .to_string(),
            });
        let mut sqlstates: Vec<(String, u64)> = ext
            .fields
            .iter()
            .filter_map(|f| {
                let code = f.name.as_str().strip_prefix("errors.sqlstate.")?;
                let n = ext.count(f.name.as_str())?;
                (ErrorClass::of_sqlstate(code) == class).then(|| (code.to_string(), n))
            })
            .collect();
        sqlstates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.push(ClassErrors {
            class,
            count,
            worst,
            sqlstates,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_fall_in_their_class() {
        for (code, class) in [
            ("42P01", ErrorClass::SchemaDrift),
            ("42703", ErrorClass::SchemaDrift),
            ("42883", ErrorClass::SchemaDrift),
            ("42601", ErrorClass::SchemaDrift),
            ("42501", ErrorClass::Permissions),
            ("53300", ErrorClass::Capacity),
            ("40001", ErrorClass::Concurrency),
            ("40P01", ErrorClass::Concurrency),
            ("40002", ErrorClass::Other),
            ("22012", ErrorClass::Data),
            ("23505", ErrorClass::Data),
            ("55P03", ErrorClass::Configuration),
            ("58P01", ErrorClass::Configuration),
            ("XX000", ErrorClass::Configuration),
            ("57014", ErrorClass::Other),
            ("", ErrorClass::Other),
        ] {
            assert_eq!(ErrorClass::of_sqlstate(code), class, "{code}");
        }
        assert!(ErrorClass::SchemaDrift.deterministic());
        assert!(ErrorClass::Permissions.deterministic());
        assert!(!ErrorClass::Data.deterministic());
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(c.as_str()), Some(c));
        }
    }

    #[test]
    fn classes_round_trip_through_extensions() {
        let classes = vec![
            ClassErrors {
                class: ErrorClass::SchemaDrift,
                count: 4,
                worst: Some(WorstFingerprint {
                    fingerprint: 0x5ee9,
                    count: 3,
                    text: "select * from gone".into(),
                    sqlstate: "42P01".into(),
                }),
                sqlstates: vec![("42P01".into(), 3), ("42703".into(), 1)],
            },
            ClassErrors {
                class: ErrorClass::Data,
                count: 2,
                worst: None,
                sqlstates: vec![("22012".into(), 2)],
            },
        ];
        let mut ext = Extensions::default();
        write_classes(&mut ext, &classes);
        assert_eq!(read_classes(&ext), classes);
        assert_eq!(
            classes[0].describe(),
            "schema drift 4 (42P01 undefined table 3, 42703 undefined column 1; \
             worst 0000000000005ee9 \"select * from gone\" (3))"
        );
    }
}
