//! A writer of JSON objects as Go's `encoding/json` marshals etcd's generated structs:
//! fields in declaration order, `omitempty` dropping zero values, byte strings as base64.

use crate::golog::json_string;

/// A JSON object under construction.
#[derive(Debug)]
pub(crate) struct Obj {
    buf: String,
    empty: bool,
}

impl Default for Obj {
    fn default() -> Self {
        Self::new()
    }
}

impl Obj {
    /// An empty object.
    pub(crate) fn new() -> Self {
        Obj {
            buf: String::from("{"),
            empty: true,
        }
    }

    /// A field with an already encoded value.
    pub(crate) fn raw(mut self, key: &str, value: &str) -> Self {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        self.buf.push_str(&json_string(key));
        self.buf.push(':');
        self.buf.push_str(value);
        self
    }

    /// A number, omitted when zero (`omitempty`).
    pub(crate) fn num<N: PartialEq + Default + ToString>(self, key: &str, n: N) -> Self {
        if n == N::default() {
            self
        } else {
            self.raw(key, &n.to_string())
        }
    }

    /// A number, always present.
    pub(crate) fn num_always<N: ToString>(self, key: &str, n: N) -> Self {
        self.raw(key, &n.to_string())
    }

    /// A bool, omitted when false.
    pub(crate) fn flag(self, key: &str, b: bool) -> Self {
        if b {
            self.raw(key, "true")
        } else {
            self
        }
    }

    /// A bool, always present.
    pub(crate) fn flag_always(self, key: &str, b: bool) -> Self {
        self.raw(key, if b { "true" } else { "false" })
    }

    /// A string, omitted when empty.
    pub(crate) fn text(self, key: &str, s: &str) -> Self {
        if s.is_empty() {
            self
        } else {
            self.raw(key, &json_string(s))
        }
    }

    /// A string, always present.
    pub(crate) fn text_always(self, key: &str, s: &str) -> Self {
        self.raw(key, &json_string(s))
    }

    /// Bytes as base64, omitted when empty.
    pub(crate) fn bytes(self, key: &str, b: &[u8]) -> Self {
        if b.is_empty() {
            self
        } else {
            self.raw(key, &format!("\"{}\"", base64(b)))
        }
    }

    /// An optional nested object, omitted when absent.
    pub(crate) fn obj(self, key: &str, value: Option<String>) -> Self {
        match value {
            Some(v) => self.raw(key, &v),
            None => self,
        }
    }

    /// A list of encoded values, omitted when empty.
    pub(crate) fn list(self, key: &str, items: Vec<String>) -> Self {
        if items.is_empty() {
            self
        } else {
            self.raw(key, &array(items))
        }
    }

    /// The encoded object.
    pub(crate) fn end(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// A JSON array of encoded values.
pub(crate) fn array(items: Vec<String>) -> String {
    format!("[{}]", items.join(","))
}

/// A JSON array, or `null` for Go's nil slice (`None`).
pub(crate) fn array_or_null(items: Option<Vec<String>>) -> String {
    match items {
        Some(items) => array(items),
        None => "null".into(),
    }
}

/// Standard base64 with padding (Go's encoding of `[]byte`).
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"bar2"), "YmFyMg==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn omitempty_drops_zero_values() {
        let o = Obj::new()
            .num("a", 0i64)
            .num("b", 2u64)
            .flag("c", false)
            .text("d", "")
            .bytes("e", b"x")
            .end();
        assert_eq!(o, "{\"b\":2,\"e\":\"eA==\"}");
    }
}
