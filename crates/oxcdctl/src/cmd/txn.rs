//! `txn`: compares, success and failure requests read from stdin (each section ends with an
//! empty line), in etcdctl's grammar, with its prompts in interactive mode.

use std::io::BufRead;

use clap::Parser;
use oxcd_proto::etcdserverpb::{compare, request_op, Compare, RequestOp, TxnRequest};

use super::kv::{del_request, get_request, put_request};
use super::{emit, Ctx};
use crate::cli::{DelArgs, GetArgs, PutArgs};
use crate::conn;
use crate::error::{CtlError, ExitCode};
use crate::golog::go_quote;
use crate::gostr::unquote;

/// `txn [-i]`.
pub(super) async fn run(ctx: &Ctx, interactive: bool, args: &[String]) -> Result<(), CtlError> {
    if !args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let prompt = |text: &str| {
        if interactive {
            emit(format!("{text}\n").as_bytes())
        } else {
            Ok(())
        }
    };
    prompt("compares:")?;
    let compare = read_section(parse_compare)?;
    prompt("success requests (get, put, del):")?;
    let success = read_section(parse_request)?;
    prompt("failure requests (get, put, del):")?;
    let failure = read_section(parse_request)?;
    let request = TxnRequest {
        compare,
        success,
        failure,
    };
    let response = ctx
        .conn
        .unary(None, |s| async move {
            conn::kv(&s).txn(s.request(request)).await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    emit(&ctx.printer.txn(&response)?)
}

/// One line of stdin; a missing newline is Go's `EOF` error.
fn read_line(input: &mut impl BufRead) -> Result<String, CtlError> {
    let mut buf = Vec::new();
    let n = input
        .read_until(b'\n', &mut buf)
        .map_err(|e| CtlError::new(ExitCode::InvalidInput, e))?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return Err(CtlError::new(ExitCode::InvalidInput, "EOF"));
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

/// Lines up to the first empty one, each parsed as soon as it is read (as etcdctl, which
/// fails on a bad line before reading on). stdin is locked only while a line is read, since
/// `put <key>` in a txn reads its value from the rest of stdin.
fn read_section<T>(parse: impl Fn(&str) -> Result<T, CtlError>) -> Result<Vec<T>, CtlError> {
    let mut items = Vec::new();
    loop {
        let line = read_line(&mut std::io::stdin().lock())?;
        if line.is_empty() {
            return Ok(items);
        }
        items.push(parse(&line)?);
    }
}

/// The requests a txn line may hold.
#[derive(Debug, Parser)]
#[command(no_binary_name = true, infer_subcommands = true)]
struct TxnLine {
    #[command(subcommand)]
    op: TxnOp,
}

#[derive(Debug, clap::Subcommand)]
enum TxnOp {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

/// One `get|put|del ...` line.
pub(super) fn parse_request(line: &str) -> Result<RequestOp, CtlError> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(CtlError::new(
            ExitCode::InvalidInput,
            format!("invalid txn compare request: {line}"),
        ));
    }
    let parsed = TxnLine::try_parse_from(&args).map_err(|_| {
        CtlError::new(
            ExitCode::InvalidInput,
            format!("invalid txn request: {line}"),
        )
    })?;
    let request = match parsed.op {
        TxnOp::Get(a) => request_op::Request::RequestRange(get_request(&a)?),
        TxnOp::Put(a) => {
            // etcdctl's stdin is already buffered by the txn reader: a value "from stdin"
            // is never there.
            if a.args.len() == 1 && !a.ignore_value {
                return Err(CtlError::bad_args(
                    "put command needs 1 argument and input from stdin or 2 arguments",
                ));
            }
            request_op::Request::RequestPut(put_request(&a)?)
        }
        TxnOp::Del(a) => request_op::Request::RequestDeleteRange(del_request(&a)?),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// etcdctl's `argify`: words, "double-quoted" (Go-unquoted) and 'single-quoted' strings.
/// A single-quoted word is cut as etcdctl cuts it: `[1 : number of words - 1]`.
pub(super) fn argify(line: &str) -> Result<Vec<String>, CtlError> {
    let chars: Vec<char> = line.chars().collect();
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c');
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            let mut j = i + 1;
            let mut closed = None;
            while j < chars.len() {
                match chars[j] {
                    '\\' if j + 1 < chars.len() => j += 2,
                    '"' => {
                        closed = Some(j);
                        break;
                    }
                    _ => j += 1,
                }
            }
            if let Some(end) = closed {
                words.push(chars[i..=end].iter().collect());
                i = end + 1;
                continue;
            }
        } else if c == '\'' {
            if let Some(off) = chars[i + 1..].iter().position(|&x| x == '\'') {
                let end = i + 1 + off;
                words.push(chars[i..=end].iter().collect());
                i = end + 1;
                continue;
            }
        } else if !is_space(c) {
            let mut j = i + 1;
            while j < chars.len() && !is_space(chars[j]) {
                j += 1;
            }
            words.push(chars[i..j].iter().collect());
            i = j;
            continue;
        }
        i += 1;
    }
    let count = words.len();
    words
        .into_iter()
        .map(|w| {
            if w.starts_with('\'') {
                let end = count.saturating_sub(1);
                if end < 1 || end > w.len() {
                    return Err(CtlError::new(
                        ExitCode::InvalidInput,
                        format!("invalid txn request: {line}"),
                    ));
                }
                Ok(w.get(1..end).unwrap_or_default().to_string())
            } else if w.starts_with('"') {
                unquote(&w).ok_or_else(|| CtlError::new(ExitCode::InvalidInput, "unexpected EOF"))
            } else {
                Ok(w)
            }
        })
        .collect()
}

/// A scanner of Go's `fmt.Sscanf(s, "%q) %s %q", ...)`.
struct Scan<'a> {
    rest: &'a str,
}

impl<'a> Scan<'a> {
    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', '\r', '\n']);
    }

    fn quoted(&mut self) -> Option<String> {
        self.skip_spaces();
        let bytes = self.rest.as_bytes();
        let end = match bytes.first()? {
            b'"' => {
                let mut j = 1;
                loop {
                    match bytes.get(j)? {
                        b'\\' => j += 2,
                        b'"' => break j,
                        _ => j += 1,
                    }
                }
            }
            b'`' => 1 + self.rest[1..].find('`')?,
            _ => return None,
        };
        let token = &self.rest[..=end];
        self.rest = &self.rest[end + 1..];
        unquote(token)
    }

    fn literal(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn word(&mut self) -> Option<String> {
        self.skip_spaces();
        let end = self
            .rest
            .find([' ', '\t', '\r', '\n'])
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let w = self.rest[..end].to_string();
        self.rest = &self.rest[end..];
        Some(w)
    }
}

/// One compare line, `target("key") op "value"`.
pub(super) fn parse_compare(line: &str) -> Result<Compare, CtlError> {
    let invalid = |m: String| CtlError::new(ExitCode::InvalidInput, m);
    let Some((target, rest)) = line.split_once('(') else {
        return Err(invalid(format!("malformed comparison: {line}")));
    };
    let mut scan = Scan { rest };
    let (mut key, mut op, mut val) = (String::new(), String::new(), String::new());
    let mut n = 0;
    if let Some(k) = scan.quoted() {
        key = k;
        n = 1;
        if scan.literal(')') {
            if let Some(o) = scan.word() {
                op = o;
                n = 2;
                if let Some(v) = scan.quoted() {
                    val = v;
                    n = 3;
                }
            }
        }
    }
    if n != 3 {
        return Err(invalid(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            go_quote(key.as_bytes()),
            go_quote(val.as_bytes())
        )));
    }
    let result = match op.as_str() {
        "=" | "==" => compare::CompareResult::Equal,
        "!=" => compare::CompareResult::NotEqual,
        "<" => compare::CompareResult::Less,
        ">" => compare::CompareResult::Greater,
        _ => {
            return Err(invalid(format!(
                "malformed comparison: {line} (unknown op {op})"
            )))
        }
    };
    let number = || {
        val.parse::<i64>()
            .map_err(|_| invalid(format!("invalid txn compare request: {line}")))
    };
    let (target, union) = match target {
        "ver" | "version" => (
            compare::CompareTarget::Version,
            compare::TargetUnion::Version(number()?),
        ),
        "c" | "create" => (
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(number()?),
        ),
        "m" | "mod" => (
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(number()?),
        ),
        "val" | "value" => (
            compare::CompareTarget::Value,
            compare::TargetUnion::Value(val.clone().into_bytes()),
        ),
        "lease" => (
            compare::CompareTarget::Lease,
            compare::TargetUnion::Lease(number()?),
        ),
        _ => {
            return Err(invalid(format!(
                "malformed comparison: {line} (unknown target {target})"
            )))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_parse_as_etcdctl() {
        let c = parse_compare("mod(\"foo\") > \"0\"").unwrap();
        assert_eq!(c.key, b"foo");
        assert_eq!(c.target_union, Some(compare::TargetUnion::ModRevision(0)));
        assert_eq!(c.result, compare::CompareResult::Greater as i32);
        let e = parse_compare("bogus").unwrap_err();
        assert_eq!(e.message.unwrap(), "malformed comparison: bogus");
        let e = parse_compare("value(\"k\") =").unwrap_err();
        assert_eq!(
            e.message.unwrap(),
            "malformed comparison: value(\"k\") =; got value(\"k\") = \"\""
        );
        let e = parse_compare("version(\"k\") = \"x\"").unwrap_err();
        assert_eq!(
            e.message.unwrap(),
            "invalid txn compare request: version(\"k\") = \"x\""
        );
    }

    #[test]
    fn argify_splits_quotes_as_etcdctl() {
        assert_eq!(argify("put \"a b\" c").unwrap(), vec!["put", "a b", "c"]);
        // etcdctl cuts a single-quoted word at [1 : number of words - 1].
        assert_eq!(argify("put k 'xyz'").unwrap(), vec!["put", "k", "x"]);
    }

    #[test]
    fn requests_parse_and_bad_ones_are_invalid() {
        let op = parse_request("put a 1").unwrap();
        assert!(matches!(
            op.request,
            Some(request_op::Request::RequestPut(_))
        ));
        let e = parse_request("bogus x").unwrap_err();
        assert_eq!(
            (e.code, e.message.unwrap()),
            (
                ExitCode::InvalidInput,
                "invalid txn request: bogus x".into()
            )
        );
    }

    #[test]
    fn a_section_without_its_empty_line_is_eof() {
        let mut input = std::io::Cursor::new(b"put a 1".to_vec());
        assert_eq!(read_line(&mut input).unwrap_err().message.unwrap(), "EOF");
    }
}
