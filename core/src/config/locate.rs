//! Finding where in the TOML text a key stands, so errors can name the line.
//!
//! Works on the text itself for the ordinary layout (`[general]`, `[[pools]]` and
//! `key = value` lines); where a key cannot be found, the error simply has no line.

/// 1-based line number of a byte offset.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Dotted key path of the `key = value` line containing `offset`, e.g. `pools[1].port`.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let target = line_of_offset(text, offset);
    let mut section = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if let Some(name) = array_header(line) {
            let n = counts.entry(name.to_string()).or_insert(0);
            section = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = table_header(line) {
            section = name.to_string();
        }
        if i + 1 == target {
            let key = line.split('=').next().map(str::trim).unwrap_or("");
            if line.contains('=') && !key.is_empty() {
                return Some(if section.is_empty() {
                    key.to_string()
                } else {
                    format!("{section}.{key}")
                });
            }
            return (!section.is_empty()).then_some(section);
        }
    }
    None
}

/// Line of `key` inside the `index`-th `[[array]]` table (or `[array]` when `index` is None).
pub fn line_of_key(text: &str, array: &str, index: Option<usize>, key: &str) -> Option<usize> {
    let mut in_section = false;
    let mut seen = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if let Some(name) = array_header(line) {
            in_section = index.is_some() && name == array && Some(seen) == index;
            if name == array {
                seen += 1;
            }
            if in_section && key.is_empty() {
                return Some(i + 1);
            }
            continue;
        }
        if let Some(name) = table_header(line) {
            in_section = index.is_none() && name == array;
            continue;
        }
        if in_section {
            let k = line.split('=').next().map(str::trim).unwrap_or("");
            if line.contains('=') && k == key {
                return Some(i + 1);
            }
        }
    }
    None
}

fn array_header(line: &str) -> Option<&str> {
    line.strip_prefix("[[")?.strip_suffix("]]").map(str::trim)
}

fn table_header(line: &str) -> Option<&str> {
    if line.starts_with("[[") {
        return None;
    }
    line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

fn strip_comment(line: &str) -> &str {
    // Good enough for config keys: a `#` inside a quoted value is kept.
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' | '\'' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}
