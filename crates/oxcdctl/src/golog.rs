//! What the Go side of etcdctl prints besides the command's output: clientv3's zap warnings
//! (`{"level":"warn","ts":...}`), Go's `%q` quoting, `time.Duration` and go-humanize texts.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A random (version 4) UUID, as clientv3 names each client.
pub(crate) fn random_uuid() -> String {
    let mut b = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if filled.is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = (nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// zap's production timestamp (`2006-01-02T15:04:05.000Z`) of now, in UTC.
pub(crate) fn zap_timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One clientv3 zap `warn` line on stderr (ISO `ts`), with extra JSON-encoded fields.
pub(crate) fn warn(caller: &str, msg: &str, fields: &[(&str, String)]) {
    let mut line = format!(
        "{{\"level\":\"warn\",\"ts\":{},\"caller\":{},\"msg\":{}",
        json_string(&zap_timestamp(SystemTime::now())),
        json_string(caller),
        json_string(msg)
    );
    for (k, v) in fields {
        line.push_str(&format!(",{}:{v}", json_string(k)));
    }
    line.push_str("}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// One zap `info` line on stderr: `ts` as epoch seconds (etcd's own loggers) or as ISO text
/// (clientv3's), then the caller, the message and extra fields (already JSON-encoded values).
pub(crate) fn info(epoch_ts: bool, caller: &str, msg: &str, fields: &[(&str, String)]) {
    let now = SystemTime::now();
    let ts = if epoch_ts {
        format!(
            "{}",
            now.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        )
    } else {
        json_string(&zap_timestamp(now))
    };
    let mut line = format!(
        "{{\"level\":\"info\",\"ts\":{ts},\"caller\":{},\"msg\":{}",
        json_string(caller),
        json_string(msg)
    );
    for (k, v) in fields {
        line.push_str(&format!(",{}:{v}", json_string(k)));
    }
    line.push_str("}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// clientv3's `retrying of unary invoker failed` warning, on stderr.
pub(crate) fn warn_retrying_unary(target: &str, error: &str) {
    let line = format!(
        "{{\"level\":\"warn\",\"ts\":\"{}\",\"caller\":\"clientv3/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":{},\"attempt\":0,\"error\":{}}}\n",
        zap_timestamp(SystemTime::now()),
        json_string(target),
        json_string(error)
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A JSON string as Go's `encoding/json` writes it (HTML-safe escapes, U+2028/9 escaped,
/// invalid UTF-8 as U+FFFD).
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a byte string (`strconv.Quote`): printable runes as they are, the rest
/// escaped; bytes that are not UTF-8 as `\xNN`.
pub(crate) fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                quote_str(s, &mut out);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                quote_str(std::str::from_utf8(good).unwrap_or_default(), &mut out);
                let n = e.error_len().unwrap_or(bad.len()).max(1);
                for b in &bad[..n] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
    out.push('"');
    out
}

fn quote_str(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
}

/// Go's `strconv.IsPrint`, closely enough: no controls, no spaces other than U+0020, no
/// format characters such as U+00AD or U+200B, no private-use or noncharacters.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let u = c as u32;
    !(c.is_control()
        || c.is_whitespace()
        || u == 0xad
        || (0x200b..=0x200f).contains(&u)
        || (0x202a..=0x202e).contains(&u)
        || (0x2060..=0x206f).contains(&u)
        || u == 0xfeff
        || (0xe000..=0xf8ff).contains(&u)
        || (0xfff9..=0xfffb).contains(&u)
        || (u & 0xfffe) == 0xfffe)
}

/// Go's `time.Duration.String()` (`1.506605ms`, `2s`, `1m30s`).
pub(crate) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let seconds = trim_fraction(u128::from(s as u32) * 1_000_000_000 + frac, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `value / unit` with its fraction, trailing zeros dropped (`1506605 / 1e6` → `1.506605`).
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// go-humanize's `Bytes` (SI units: `20 kB`, `1.2 MB`).
pub(crate) fn humanize_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let s = size as f64;
    let e = (s.ln() / 1000f64.ln()).floor();
    let suffix = UNITS[e as usize];
    let val = (s / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_223_539_999);
        assert_eq!(zap_timestamp(t), "2026-12-02T14:58:59.999Z");
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn quoting_follows_go() {
        assert_eq!(go_quote(b"foo"), "\"foo\"");
        assert_eq!(go_quote(b"a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote(b"\x00\xff"), "\"\\x00\\xff\"");
        assert_eq!(go_quote("é".as_bytes()), "\"é\"");
        assert_eq!(go_quote("\u{a0}".as_bytes()), "\"\\u00a0\"");
    }

    #[test]
    fn json_strings_are_html_safe() {
        assert_eq!(
            json_string("a<b>&\"\u{1}"),
            "\"a\\u003cb\\u003e\\u0026\\\"\\u0001\""
        );
    }

    #[test]
    fn durations_print_as_go() {
        assert_eq!(go_duration(Duration::from_nanos(1_506_605)), "1.506605ms");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_millis(90_500)), "1m30.5s");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn sizes_print_as_go_humanize() {
        assert_eq!(humanize_bytes(20_480), "20 kB");
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(1_234_567), "1.2 MB");
        assert_eq!(humanize_bytes(16_384), "16 kB");
    }
}
