//! The settings a user gave, from whichever source, before they are checked and resolved.

use std::collections::BTreeMap;
use std::time::Duration;

use super::table::{self, FlagSpec, Handling};
use super::values::Value;

/// Where a setting came from, as the user wrote it.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A command-line argument, spelled as given (`--name=value`, `-name`).
    CommandLine(String),
    /// An `ETCD_*` environment variable and its value.
    Env(String, String),
    /// A config-file key and its value.
    File(String, String),
}

/// One given setting.
#[derive(Debug, Clone)]
pub(super) struct Setting {
    /// The parsed value.
    pub value: Value,
    /// Where it came from.
    pub source: Source,
}

impl Setting {
    /// The setting as the user wrote it, for messages.
    pub(super) fn describe(&self) -> String {
        match &self.source {
            Source::CommandLine(spelled) => spelled.clone(),
            Source::Env(var, value) => format!("{var}={value}"),
            Source::File(key, value) => format!("config file key {key}: {value}"),
        }
    }
}

/// The settings given, by flag name, plus notes for the start-up log (unknown variables
/// or file keys).
#[derive(Debug, Default)]
pub(super) struct Settings {
    given: BTreeMap<&'static str, Setting>,
    /// Lines to log as warnings at start-up.
    pub notes: Vec<String>,
    /// Names of unknown settings that were ignored (config file keys).
    pub unknown: Vec<String>,
}

impl Settings {
    /// Records a setting; a later one replaces an earlier one, as with Go's flags.
    pub(super) fn set(&mut self, spec: &'static FlagSpec, value: Value, source: Source) {
        self.given.insert(spec.name, Setting { value, source });
    }

    /// The given setting of a flag, if any.
    pub(super) fn get(&self, name: &str) -> Option<&Setting> {
        self.given.get(name)
    }

    /// Whether the flag was given.
    pub(super) fn is_set(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }

    /// Names of the given flags, in table order.
    pub(super) fn given_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        table::FLAGS
            .iter()
            .map(|f| f.name)
            .filter(|n| self.given.contains_key(n))
    }

    /// The given settings with their specs, in table order.
    pub(super) fn given(&self) -> impl Iterator<Item = (&'static FlagSpec, &Setting)> + '_ {
        table::FLAGS
            .iter()
            .filter_map(|f| self.given.get(f.name).map(|s| (f, s)))
    }

    /// The flag's value: as given, else its etcd default. `None` only for a name that is not
    /// an implemented flag (a bug the tests catch).
    fn value(&self, name: &str) -> Option<Value> {
        if let Some(s) = self.given.get(name) {
            return Some(s.value.clone());
        }
        let spec = table::find(name)?;
        match spec.handling {
            Handling::Implemented { default, .. } => spec.kind.parse(default).ok(),
            _ => None,
        }
    }

    /// A text flag's value.
    pub(super) fn text(&self, name: &str) -> String {
        match self.value(name) {
            Some(Value::Text(t)) => t,
            _ => String::new(),
        }
    }

    /// A bool flag's value.
    pub(super) fn bool(&self, name: &str) -> bool {
        matches!(self.value(name), Some(Value::Bool(true)))
    }

    /// An unsigned flag's value.
    pub(super) fn uint(&self, name: &str) -> u64 {
        match self.value(name) {
            Some(Value::Uint(v)) => v,
            _ => 0,
        }
    }

    /// A signed flag's value.
    pub(super) fn int(&self, name: &str) -> i64 {
        match self.value(name) {
            Some(Value::Int(v)) => v,
            _ => 0,
        }
    }

    /// A duration flag's value.
    pub(super) fn duration(&self, name: &str) -> Duration {
        match self.value(name) {
            Some(Value::Duration(d)) => d,
            _ => Duration::ZERO,
        }
    }
}
