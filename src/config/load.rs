//! TOML layers: reading and parsing each file with its text kept for error messages,
//! merging them key by key, environment variables as overrides, and locating an error's
//! key at its file and line.

use std::path::{Path, PathBuf};

use super::{Error, Result, Settings};

/// The default config file, read if present.
pub const DEFAULT_PATH: &str = "config.toml";

/// A layer of TOML with the file it came from, for error messages.
pub struct Layer {
    pub file: PathBuf,
    pub text: String,
    pub table: toml::Table,
}

impl Layer {
    /// Reads and parses a TOML file, checking its keys against [`Settings`] so that an
    /// unknown key or a wrong type is reported with its line.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Parse`].
    pub fn read(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(file, text)
    }

    /// Parses TOML text that stands for a whole settings file.
    ///
    /// # Errors
    /// [`Error::Parse`].
    pub fn parse(file: &Path, text: String) -> Result<Self> {
        let located = |e: toml::de::Error| {
            let (line, column) = e.span().map_or((1, 1), |span| line_col(&text, span.start));
            let message = e.message().trim();
            // A wrong value says which value, not which key: name the key too.
            let message = match e.span().and_then(|span| key_at(&text, span.start)) {
                Some(key) if !message.contains(&format!("`{key}`")) => {
                    format!("key `{key}`: {message}")
                }
                _ => message.to_owned(),
            };
            Error::Parse {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        let table: toml::Table = toml::from_str(&text).map_err(located)?;
        // Checked alone, a layer reports unknown keys and wrong types at their line. A
        // missing field is fine here: an overlay may set part of a table (one tier
        // price), and the merged settings are checked again.
        if let Err(e) = toml::from_str::<Settings>(&text) {
            if !e.message().starts_with("missing field") {
                return Err(located(e));
            }
        }
        Ok(Self {
            file: file.to_owned(),
            text,
            table,
        })
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The line where a dotted key is set (or its table opens), found by walking the table
/// headers; a key may be given by its last segments only.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let mut table = String::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            table = header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .replace('"', "");
            if table == key || table.ends_with(&format!(".{key}")) {
                return Some(index + 1);
            }
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name.trim().replace('"', "");
            let full = if table.is_empty() {
                name
            } else {
                format!("{table}.{name}")
            };
            if full == key || full.ends_with(&format!(".{key}")) {
                return Some(index + 1);
            }
        }
    }
    None
}

/// The dotted key set on the line holding byte `offset` (the table header's key on a
/// header line), found by walking the table headers above it.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let (target, _) = line_col(text, offset);
    let mut table = String::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            table = header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .replace('"', "");
            if index + 1 == target {
                return Some(table);
            }
            continue;
        }
        if index + 1 == target {
            let (name, _) = line.split_once('=')?;
            let name = name.trim().replace('"', "");
            return Some(if table.is_empty() {
                name
            } else {
                format!("{table}.{name}")
            });
        }
    }
    None
}

/// Merges `overlay` into `base`, key by key (tables recursively, other values replaced).
pub fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => merge(into, from),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The environment prefix: `ACCTD__DATABASE__URL` sets `database.url`.
pub const ENV_PREFIX: &str = "ACCTD__";
pub(super) fn invalid_in(layers: &[Layer], key: &str, message: &str) -> Error {
    let sources: Vec<(PathBuf, String)> = layers
        .iter()
        .map(|l| (l.file.clone(), l.text.clone()))
        .collect();
    invalid_at(&sources, key, message)
}

/// Locates `key` in the last layer that mentions it. Without a key, the first name in
/// backticks in the message (serde's "unknown field `x`") is looked up instead.
pub(super) fn invalid_at(sources: &[(PathBuf, String)], key: &str, message: &str) -> Error {
    let named = message.split('`').nth(1).unwrap_or_default();
    let key = if key.is_empty() { named } else { key };
    let found = sources
        .iter()
        .rev()
        .find_map(|(file, text)| line_of_key(text, key).map(|line| (file.clone(), line)));
    let (file, line) = found.unwrap_or_else(|| {
        let file = sources
            .last()
            .map_or_else(|| PathBuf::from("(defaults)"), |(f, _)| f.clone());
        (file, 1)
    });
    Error::Invalid {
        file,
        line,
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

pub(super) fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

/// An environment value is read as a TOML value if it parses as one (numbers, booleans,
/// arrays, quoted strings), else as a plain string.
pub(super) fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use crate::config::layer;

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = layer("[lifecycle]\ngrace_days = 5\ngrace_dayz = 3\n")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.starts_with("c.toml:3:"), "{msg}");
        assert!(msg.contains("grace_dayz"), "{msg}");
    }
}
