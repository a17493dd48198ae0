//! What a command answers: a result set of text columns (or none) and a command tag,
//! encoded as RowDescription, DataRow..., CommandComplete.

use crate::protocol::messages;
use bytes::BytesMut;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// Column names; empty for commands that return no rows.
    pub columns: Vec<String>,
    /// Text values, `None` for NULL; each row has `columns.len()` values.
    pub rows: Vec<Vec<Option<String>>>,
    /// The CommandComplete tag (`SHOW`, `DISABLE`, ...).
    pub tag: String,
}

impl Output {
    /// A result set with these columns and no rows yet.
    pub fn table(tag: &str, columns: &[&str]) -> Output {
        Output {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            tag: tag.to_string(),
        }
    }

    /// Only a command tag.
    pub fn done(tag: &str) -> Output {
        Output {
            tag: tag.to_string(),
            ..Output::default()
        }
    }

    /// One column, one row per line (`SHOW MIRROR READINESS`, `RELOAD`).
    pub fn lines(tag: &str, column: &str, lines: impl IntoIterator<Item = String>) -> Output {
        let mut out = Output::table(tag, &[column]);
        for line in lines {
            out.rows.push(vec![Some(line)]);
        }
        out
    }

    /// Appends a row; `values` must match the columns.
    pub fn row(&mut self, values: Vec<Option<String>>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(values);
    }

    /// The rows as wire messages.
    pub fn encode(&self, buf: &mut BytesMut) {
        if !self.columns.is_empty() {
            let columns: Vec<&str> = self.columns.iter().map(String::as_str).collect();
            messages::row_description(buf, &columns);
            for row in &self.rows {
                messages::data_row(buf, row);
            }
        }
        messages::command_complete(buf, &self.tag);
    }
}

/// `Some(value.to_string())`, for building rows.
pub fn text(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

/// Milliseconds with two decimals.
pub fn ms(value: f64) -> Option<String> {
    Some(format!("{value:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::Frames;

    #[test]
    fn encodes_description_rows_and_tag() {
        let mut out = Output::table("SHOW", &["a", "b"]);
        out.row(vec![text(1), None]);
        let mut buf = BytesMut::new();
        out.encode(&mut buf);
        let tags: Vec<u8> = Frames::new(&buf).map(|(t, _)| t).collect();
        assert_eq!(tags, b"TDC");
        let mut buf = BytesMut::new();
        Output::done("RELOAD").encode(&mut buf);
        assert_eq!(Frames::new(&buf).map(|(t, _)| t).collect::<Vec<_>>(), b"C");
    }
}
