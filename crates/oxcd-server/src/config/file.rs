//! etcd's YAML `--config-file`. Its keys are etcd's (mostly the flag names; TLS settings
//! sit under `client-transport-security` and `peer-transport-security`), and its values
//! are typed as etcd reads them: booleans and numbers unquoted, durations as integer
//! nanoseconds (Go's `time.Duration` in JSON), lists as YAML sequences or comma lists.
//! Unknown keys are ignored, as etcd ignores them, and reported in the log.

use std::path::Path;
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

use super::settings::{Settings, Source};
use super::table::{self, FileKey, FlagSpec};
use super::values::{Kind, Value};
use super::ConfigError;

/// Reads the file into settings.
pub(super) fn read(path: &Path) -> Result<Settings, ConfigError> {
    let err = |reason: String| ConfigError::ConfigFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| err(format!("not valid YAML: {e}")))?;
    let entries = match docs.into_iter().next() {
        None | Some(Yaml::Null) => Vec::new(),
        Some(Yaml::Hash(map)) => flatten(map),
        Some(_) => return Err(err("expected a mapping of etcd config keys".into())),
    };
    let mut settings = Settings::default();
    for (key, value) in entries {
        let Some(spec) = table::FLAGS
            .iter()
            .find(|f| file_key(f).as_deref() == Some(&key))
        else {
            settings.notes.push(format!(
                "config file key {key} is not an etcd setting and is ignored (etcd ignores it too)"
            ));
            settings.unknown.push(format!("{key} (config file key)"));
            continue;
        };
        if matches!(value, Yaml::Null) {
            continue;
        }
        let shown = show(&value);
        let parsed = typed(spec.kind, value).map_err(|expected| {
            err(format!(
                "key {key}: expected {expected}, as etcd reads it; found {shown}"
            ))
        })?;
        settings.set(spec, parsed, Source::File(key, shown));
    }
    Ok(settings)
}

/// The flag's key in the file, sections joined with a dot.
fn file_key(spec: &FlagSpec) -> Option<String> {
    match spec.file_key {
        FileKey::Same => Some(spec.name.to_string()),
        FileKey::Named(key) => Some(key.to_string()),
        FileKey::Client(key) => Some(format!("client-transport-security.{key}")),
        FileKey::Peer(key) => Some(format!("peer-transport-security.{key}")),
        FileKey::None => None,
    }
}

/// Top-level entries, with the entries of nested mappings as `section.key`.
fn flatten(map: yaml_rust2::yaml::Hash) -> Vec<(String, Yaml)> {
    let mut out = Vec::new();
    for (k, v) in map {
        let key = show(&k);
        match v {
            Yaml::Hash(inner) => {
                for (k2, v2) in inner {
                    out.push((format!("{key}.{}", show(&k2)), v2));
                }
            }
            v => out.push((key, v)),
        }
    }
    out
}

/// A YAML scalar or list as text, for messages and as a flag value.
fn show(value: &Yaml) -> String {
    match value {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(items) => items.iter().map(show).collect::<Vec<_>>().join(","),
        Yaml::Null => "null".into(),
        Yaml::Hash(_) => "a mapping".into(),
        Yaml::Alias(_) | Yaml::BadValue => "an unsupported YAML value".into(),
    }
}

/// Converts a YAML value to the flag's type, as Go's JSON decoding into etcd's config
/// struct would; the error says what was expected.
fn typed(kind: Kind, value: Yaml) -> Result<Value, String> {
    match (kind, value) {
        (Kind::Bool, Yaml::Boolean(b)) => Ok(Value::Bool(b)),
        (Kind::Uint, Yaml::Integer(i)) => u64::try_from(i).map(Value::Uint).map_err(|_| kind.expected()),
        (Kind::Uint32, Yaml::Integer(i)) => u32::try_from(i)
            .map(|v| Value::Uint(v.into()))
            .map_err(|_| kind.expected()),
        (Kind::Int, Yaml::Integer(i)) => Ok(Value::Int(i)),
        (Kind::Duration, Yaml::Integer(ns)) => u64::try_from(ns)
            .map(|ns| Value::Duration(Duration::from_nanos(ns)))
            .map_err(|_| "a non-negative integer number of nanoseconds".into()),
        (Kind::Duration, _) => Err(
            "an integer number of nanoseconds (etcd's file stores Go durations that way: 10m is 600000000000)".into(),
        ),
        (Kind::List, v @ (Yaml::Array(_) | Yaml::String(_))) => Ok(Value::Text(show(&v))),
        (Kind::Text | Kind::Urls | Kind::Choice(_) | Kind::Retention, Yaml::String(s)) => {
            kind.parse(&s)
        }
        (Kind::Bool, _) => Err("an unquoted true or false".into()),
        (Kind::Uint | Kind::Uint32 | Kind::Int, _) => Err(format!("{} (unquoted)", kind.expected())),
        (Kind::List, _) => Err("a list of strings".into()),
        _ => Err(format!("{} (a quoted string)", kind.expected())),
    }
}
