//! TOML layers: reading and parsing each file with its text kept for error messages,
//! merging them key by key, environment variables as overrides, and locating an error's
//! key at its file and line by the spans the TOML parser gives every key and value.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

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

/// Every key of a TOML text with the spans the parser gave it: a dotted path
/// (`lifecycle.grace_days`; an array's items as `webhooks.endpoints[0]`), the span of the
/// key (of a table's header, of an array item the item) and the span of its value.
struct Keys(Vec<Key>);

struct Key {
    path: String,
    /// The key's own span: its name, a table's header, or an array item.
    name: Range<usize>,
    value: Range<usize>,
}

impl Keys {
    /// The keys of `text`. Text with a syntax error yields the keys the parser read.
    fn of(text: &str) -> Self {
        let (root, _errors) = DeTable::parse_recoverable(text);
        let mut keys = Vec::new();
        table_keys(root.get_ref(), "", &mut keys);
        Self(keys)
    }

    /// The key named `key`, or failing that ending with it (a scenario's `[config]`
    /// table holds settings keys under `config.`).
    fn find(&self, key: &str) -> Option<&Key> {
        let suffix = format!(".{key}");
        self.0
            .iter()
            .find(|k| k.path == key)
            .or_else(|| self.0.iter().find(|k| k.path.ends_with(&suffix)))
    }

    /// The innermost key whose name or value holds byte `offset`.
    fn at(&self, offset: usize) -> Option<&Key> {
        self.0
            .iter()
            .filter(|k| k.name.contains(&offset) || k.value.contains(&offset))
            .max_by_key(|k| k.path.len())
    }
}

fn table_keys(table: &DeTable<'_>, prefix: &str, out: &mut Vec<Key>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.push(Key {
            path: path.clone(),
            name: key.span(),
            value: value.span(),
        });
        value_keys(value.get_ref(), &path, out);
    }
}

fn value_keys(value: &DeValue<'_>, path: &str, out: &mut Vec<Key>) {
    match value {
        DeValue::Table(table) => table_keys(table, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                out.push(Key {
                    path: path.clone(),
                    name: item.span(),
                    value: item.span(),
                });
                value_keys(item.get_ref(), &path, out);
            }
        }
        _ => {}
    }
}

/// The line where a dotted key is set (or its table opens); a key may be given by its
/// last segments only.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    Keys::of(text)
        .find(key)
        .map(|k| line_col(text, k.name.start).0)
}

/// The dotted key whose key or value holds byte `offset` (the innermost, for a value
/// inside an inline table or array).
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    Keys::of(text).at(offset).map(|k| k.path.clone())
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

/// Locates `key` in the last layer that sets it; failing that, the nearest table around
/// it (a field missing from `[[webhooks.endpoints]]` is reported at that item). Without
/// a key, the first name in backticks in the message (serde's "unknown field `x`") is
/// looked up instead.
pub(super) fn invalid_at(sources: &[(PathBuf, String)], key: &str, message: &str) -> Error {
    let named = message.split('`').nth(1).unwrap_or_default();
    let key = if key.is_empty() { named } else { key };
    let keys: Vec<Keys> = sources.iter().map(|(_, text)| Keys::of(text)).collect();
    let mut wanted = key;
    let found = loop {
        if wanted.is_empty() {
            break None;
        }
        let found = sources
            .iter()
            .zip(&keys)
            .rev()
            .find_map(|((file, text), keys)| {
                keys.find(wanted)
                    .map(|k| (file.clone(), line_col(text, k.name.start).0))
            });
        if found.is_some() {
            break found;
        }
        wanted = parent(wanted);
    };
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

/// The key one level up: `a.b` of `a.b.c` and of `a.b[2]`; empty at the top.
fn parent(key: &str) -> &str {
    match key.rfind(['.', '[']) {
        Some(i) => &key[..i],
        None => "",
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
    use crate::config::{layer, Settings};

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = layer("[lifecycle]\ngrace_days = 5\ngrace_dayz = 3\n")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.starts_with("c.toml:3:"), "{msg}");
        assert!(msg.contains("grace_dayz"), "{msg}");
    }

    fn invalid(text: &str) -> String {
        let l = layer(text).unwrap();
        Settings::from_layers(vec![l], std::iter::empty())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_key_after_a_header_with_a_comment_is_located() {
        assert_eq!(
            invalid("[lifecycle] # the timers\ngrace_days = 0\n"),
            "c.toml:2: key `lifecycle.grace_days`: 0 days is out of range 1..=3650"
        );
    }

    #[test]
    fn a_header_inside_a_multiline_string_is_text() {
        let text = "[email]\nfile_dir = \"\"\"\n[lifecycle]\ngrace_days = 1\n\"\"\"\n\n\
                    [lifecycle]\ntrial_days = 5\ngrace_days = 0\n";
        assert_eq!(
            invalid(text),
            "c.toml:9: key `lifecycle.grace_days`: 0 days is out of range 1..=3650"
        );
    }

    #[test]
    fn a_dotted_key_is_located() {
        assert_eq!(
            invalid("# timers\n\nlifecycle.grace_days = 4000\n"),
            "c.toml:3: key `lifecycle.grace_days`: 4000 days is out of range 1..=3650"
        );
    }

    #[test]
    fn a_key_in_an_inline_table_is_located() {
        assert_eq!(
            invalid("# prices\n[plans.basic]\ntier_prices = { 12345 = \"1.00\" }\n"),
            "c.toml:3: key `plans.basic.tier_prices.12345`: `12345` is not one of billing.tiers"
        );
        let err = layer(
            "[api]\ntokens = [\n  { name = \"a\", role = \"viewer\", token_sha256 = 5 },\n]\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("c.toml:3:") && err.contains("key `api.tokens[0].token_sha256`"),
            "{err}"
        );
    }

    #[test]
    fn a_key_in_an_array_of_tables_is_located_in_its_item() {
        let text = "[[webhooks.endpoints]]\nname = \"a\"\nurl = \"http://a.test/\"\n\
                    secret_env = \"A\"\n\n[[webhooks.endpoints]]\nname = \"b\"\n\
                    url = \"ftp://b.test/\"\nsecret_env = \"B\"\n";
        assert_eq!(
            invalid(text),
            "c.toml:8: key `webhooks.endpoints[1].url`: `ftp://b.test/` is not an http(s) URL"
        );
        let text = "[[webhooks.endpoints]]\nname = \"a\"\nurl = \"http://a.test/\"\n\
                    secret_env = \"A\"\n\n[[webhooks.endpoints]]\nname = \"a\"\n\
                    url = \"http://b.test/\"\nsecret_env = \"B\"\n";
        assert_eq!(
            invalid(text),
            "c.toml:7: key `webhooks.endpoints[1].name`: `a` must be non-empty and unique"
        );
    }

    #[test]
    fn a_key_set_by_no_layer_is_located_at_its_table() {
        // notify.lease_seconds keeps its default; the SMTP timeout makes it too short.
        assert_eq!(
            invalid("# mail\n[email.smtp]\ntimeout_seconds = 100\n")
                .split(" must")
                .next(),
            Some("c.toml:1: key `notify.lease_seconds`: 120")
        );
        assert_eq!(
            invalid("[email.smtp]\ntimeout_seconds = 100\n\n[notify]\npoll_seconds = 5\n")
                .split(" must")
                .next(),
            Some("c.toml:4: key `notify.lease_seconds`: 120")
        );
    }
}
