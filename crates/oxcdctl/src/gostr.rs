//! Go's number parsing with its error texts (`strconv.ParseInt: parsing "x": invalid syntax`),
//! which etcdctl shows inside its own messages.

/// Go's `strconv.ParseInt(s, base, 64)`.
pub(crate) fn parse_int(s: &str, base: u32) -> Result<i64, String> {
    let err = |what: &str| {
        format!(
            "strconv.ParseInt: parsing {}: {what}",
            crate::golog::go_quote(s.as_bytes())
        )
    };
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty()
        || !digits.chars().all(|c| c.is_digit(base) || c == '_')
        || digits.contains('_')
    {
        return Err(err("invalid syntax"));
    }
    let magnitude = u128::from_str_radix(digits, base).map_err(|_| err("value out of range"))?;
    let value = if negative {
        -(magnitude as i128)
    } else {
        magnitude as i128
    };
    i64::try_from(value).map_err(|_| err("value out of range"))
}

/// Go's `strconv.ParseUint(s, base, 64)`.
pub(crate) fn parse_uint(s: &str, base: u32) -> Result<u64, String> {
    let err = |what: &str| {
        format!(
            "strconv.ParseUint: parsing {}: {what}",
            crate::golog::go_quote(s.as_bytes())
        )
    };
    if s.is_empty() || !s.chars().all(|c| c.is_digit(base)) {
        return Err(err("invalid syntax"));
    }
    u64::from_str_radix(s, base).map_err(|_| err("value out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_go() {
        assert_eq!(
            parse_int("zz", 16).unwrap_err(),
            "strconv.ParseInt: parsing \"zz\": invalid syntax"
        );
        assert_eq!(parse_int("1c41", 16).unwrap(), 0x1c41);
        assert_eq!(parse_int("-5", 10).unwrap(), -5);
        assert_eq!(
            parse_int("99999999999999999999", 10).unwrap_err(),
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
        assert_eq!(
            parse_uint("x", 16).unwrap_err(),
            "strconv.ParseUint: parsing \"x\": invalid syntax"
        );
    }
}

/// Go's `strconv.Unquote` of a double-quoted or back-quoted string.
pub(crate) fn unquote(s: &str) -> Option<String> {
    if let Some(inner) = s.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return (!inner.contains('`')).then(|| inner.to_string());
    }
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => {
                let e = chars.next()?;
                match e {
                    'a' => out.push(7),
                    'b' => out.push(8),
                    'f' => out.push(12),
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    'v' => out.push(11),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    '\'' => return None,
                    'x' => {
                        let h: String = [chars.next()?, chars.next()?].iter().collect();
                        out.push(u8::from_str_radix(&h, 16).ok()?);
                    }
                    '0'..='7' => {
                        let o: String = [e, chars.next()?, chars.next()?].iter().collect();
                        out.push(u8::from_str_radix(&o, 8).ok()?);
                    }
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let mut h = String::new();
                        for _ in 0..n {
                            h.push(chars.next()?);
                        }
                        let c = char::from_u32(u32::from_str_radix(&h, 16).ok()?)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return None,
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod unquote_tests {
    use super::unquote;

    #[test]
    fn unquotes_go_strings() {
        assert_eq!(unquote("\"a\\tb\\x41\\u00e9\"").unwrap(), "a\tbAé");
        assert_eq!(unquote("`raw\\n`").unwrap(), "raw\\n");
        assert!(unquote("\"open").is_none());
    }
}
