//! Go's value syntax for flags, as etcd's `flag.FlagSet` reads it: `strconv.ParseBool`,
//! `strconv.ParseUint`/`ParseInt` with base 0 (`0x1f`, `0o17`, `0b101`, `017`, `1_000`),
//! `time.ParseDuration`, plain strings and comma lists.

use std::time::Duration;

/// What kind of value a flag takes, which decides how its text is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Go `bool`: `--flag` alone means true; a value needs `--flag=value`.
    Bool,
    /// Go `uint`/`uint64`.
    Uint,
    /// Go `uint32`.
    Uint32,
    /// Go `int`/`int64`.
    Int,
    /// Go `time.Duration` (`10m`, `1h30m`, `250ms`).
    Duration,
    /// Free text.
    Text,
    /// Comma-separated strings.
    List,
    /// Comma-separated URLs (checked when the configuration is resolved).
    Urls,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// `--auto-compaction-retention`: an integer (hours or revisions) or a Go duration (`30m`).
    Retention,
    /// A flag etcd itself no longer supports; like a Go bool, it needs no value.
    Retired,
}

/// A parsed flag value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// A boolean.
    Bool(bool),
    /// An unsigned integer.
    Uint(u64),
    /// A signed integer.
    Int(i64),
    /// A duration.
    Duration(Duration),
    /// Text, choices, lists, URLs and retentions, as written.
    Text(String),
}

impl Kind {
    /// Whether the flag consumes the next argument when written without `=` (Go's
    /// `IsBoolFlag` is the opposite).
    pub(super) fn takes_value(self) -> bool {
        !matches!(self, Kind::Bool | Kind::Retired)
    }

    /// What a value of this kind looks like, for error messages.
    pub(super) fn expected(self) -> String {
        match self {
            Kind::Bool => "true or false".into(),
            Kind::Retired => "anything".into(),
            Kind::Uint | Kind::Uint32 => "a non-negative integer".into(),
            Kind::Int => "an integer".into(),
            Kind::Duration => "a Go duration such as 10m, 30s or 500ms".into(),
            Kind::Text | Kind::List | Kind::Urls => "text".into(),
            Kind::Choice(words) => format!("one of {}", words.join(", ")),
            Kind::Retention => "an integer (hours, or revisions) or a Go duration (30m)".into(),
        }
    }

    /// Parses `text` as Go's flag package would for this kind; the error says what was
    /// expected.
    pub(super) fn parse(self, text: &str) -> Result<Value, String> {
        let parsed = match self {
            Kind::Bool => parse_go_bool(text).map(Value::Bool),
            // etcd's retired flags accept any value and ignore it.
            Kind::Retired => Some(Value::Text(text.to_string())),
            Kind::Uint => parse_go_uint(text, u64::MAX).map(Value::Uint),
            Kind::Uint32 => parse_go_uint(text, u32::MAX.into()).map(Value::Uint),
            Kind::Int => parse_go_int(text).map(Value::Int),
            Kind::Duration => oxcd_godur::parse(text).ok().map(Value::Duration),
            Kind::Text | Kind::List | Kind::Urls => Some(Value::Text(text.to_string())),
            Kind::Choice(words) => words.contains(&text).then(|| Value::Text(text.to_string())),
            Kind::Retention => retention_is_zero(text).map(|_| Value::Text(text.to_string())),
        };
        parsed.ok_or_else(|| self.expected())
    }

    /// Whether `value` means the same as the text `reference` (both of this kind): a
    /// retention of `0` and `0h` are the same, as are the bools `true` and `1`.
    pub(super) fn same(self, value: &Value, reference: &str) -> bool {
        match (self, value) {
            (Kind::Retention, Value::Text(t)) => {
                retention_is_zero(t) == Some(true) && retention_is_zero(reference) == Some(true)
            }
            (Kind::List | Kind::Urls, Value::Text(t)) => list_items(t) == list_items(reference),
            _ => self.parse(reference).is_ok_and(|r| &r == value),
        }
    }
}

/// The non-empty, trimmed items of a comma list.
pub(super) fn list_items(text: &str) -> Vec<&str> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Go's `strconv.ParseBool`.
pub(super) fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(text, 0, bits)`, with `max` the largest value of the type.
pub(super) fn parse_go_uint(text: &str, max: u64) -> Option<u64> {
    let (radix, digits) = split_radix(text)?;
    u64::from_str_radix(&digits, radix)
        .ok()
        .filter(|v| *v <= max)
}

/// Go's `strconv.ParseInt(text, 0, 64)`.
pub(super) fn parse_go_int(text: &str) -> Option<i64> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = parse_go_uint(rest, u64::MAX)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Splits Go's base prefix off an integer literal and drops its digit separators.
fn split_radix(text: &str) -> Option<(u32, String)> {
    let lower = text.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    // Go allows `_` only between digits, or right after a base prefix.
    let bytes = digits.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_' {
            let after_prefix = i == 0 && prefixed;
            let between = i > 0 && bytes[i - 1] != b'_' && i + 1 < bytes.len();
            if !(after_prefix || between) || i + 1 == bytes.len() {
                return None;
            }
        }
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    if cleaned.is_empty() || cleaned.starts_with(['+', '-']) {
        return None;
    }
    Some((radix, cleaned))
}

/// etcd's retention: a bare number (hours in periodic mode, revisions in revision mode) or a
/// Go duration. `Some(true)` when it turns compaction off.
fn retention_is_zero(text: &str) -> Option<bool> {
    // etcd's parseCompactionRetention: a non-negative integer (Go's Atoi), else a Go duration.
    let digits = text.strip_prefix('+').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(digits.bytes().all(|b| b == b'0'));
    }
    oxcd_godur::parse(text).ok().map(|d| d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(parse_go_bool(""), None);
    }

    #[test]
    fn go_integers_take_base_prefixes_and_separators() {
        assert_eq!(parse_go_uint("100", u64::MAX), Some(100));
        assert_eq!(parse_go_uint("0x10", u64::MAX), Some(16));
        assert_eq!(parse_go_uint("0o17", u64::MAX), Some(15));
        assert_eq!(parse_go_uint("017", u64::MAX), Some(15));
        assert_eq!(parse_go_uint("0b101", u64::MAX), Some(5));
        assert_eq!(parse_go_uint("1_000", u64::MAX), Some(1000));
        assert_eq!(parse_go_uint("0x_1f", u64::MAX), Some(31));
        assert_eq!(parse_go_uint("0", u64::MAX), Some(0));
        for bad in [
            "",
            "_1",
            "1_",
            "1__0",
            "-1",
            "+1",
            "1.5",
            "0x",
            "08",
            "4294967296x",
        ] {
            assert_eq!(parse_go_uint(bad, u64::MAX), None, "{bad}");
        }
        assert_eq!(parse_go_uint("4294967296", u32::MAX.into()), None);
        assert_eq!(parse_go_int("-5"), Some(-5));
        assert_eq!(parse_go_int("+5"), Some(5));
        assert_eq!(parse_go_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_go_int("9223372036854775808"), None);
    }

    #[test]
    fn sameness_follows_the_kind() {
        assert!(Kind::Bool.same(&Value::Bool(false), "false"));
        assert!(Kind::Retention.same(&Value::Text("0h".into()), "0"));
        assert!(!Kind::Retention.same(&Value::Text("1".into()), "0"));
        assert!(Kind::List.same(&Value::Text("".into()), ""));
        assert!(Kind::Duration.same(&Value::Duration(Duration::from_secs(5)), "5s"));
    }
}
