//! `--gateway`: the put and range workloads over etcd's HTTP/JSON gateway instead of gRPC,
//! each client on its own HTTP/1.1 keep-alive connection (HTTP/1.1 has one request in
//! flight per connection, so 100 clients are 100 connections, as 100 `curl`-like clients
//! or Patroni nodes would be). The bodies are the gateway's JSON (`/v3/kv/put`,
//! `/v3/kv/range`, bytes in base64); a request succeeds on HTTP 200.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::stats::Recorder;
use crate::workload::{Rng, Workload};
use crate::Run;

/// Standard base64 with padding, as the gateway reads bytes fields.
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One HTTP/1.1 keep-alive connection to a gateway.
pub(crate) struct Conn {
    host: String,
    io: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    /// Connects to `ep` (`host:port`, `http://` optional).
    pub(crate) async fn connect(ep: &str) -> Result<Conn, String> {
        let host = ep.trim().trim_start_matches("http://").to_string();
        let tcp = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("cannot connect to {host}: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("{host}: set_nodelay: {e}"))?;
        Ok(Conn {
            host,
            io: BufReader::new(tcp),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// POSTs `body` to `path`; returns the status (the answer's body is read and dropped,
    /// except for an error's, returned in the error).
    pub(crate) async fn post(&mut self, path: &str, body: &str) -> Result<u16, String> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.io
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.line.clear();
        self.read_line().await?;
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {:?}", self.line))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            self.line.clear();
            self.read_line().await?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding")
                    && value.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        self.body.clear();
        if chunked {
            loop {
                self.line.clear();
                self.read_line().await?;
                let size = usize::from_str_radix(self.line.trim(), 16)
                    .map_err(|_| format!("bad chunk size {:?}", self.line))?;
                if size == 0 {
                    // Trailers (grpc-gateway writes some), then the blank line.
                    loop {
                        self.line.clear();
                        self.read_line().await?;
                        if self.line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                self.read_body(size + 2).await?;
            }
        } else if let Some(n) = length {
            self.read_body(n).await?;
        } else {
            return Err("an answer with neither Content-Length nor chunks".into());
        }
        if status == 200 {
            Ok(status)
        } else {
            Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&self.body).trim()
            ))
        }
    }

    async fn read_line(&mut self) -> Result<(), String> {
        match self.io.read_line(&mut self.line).await {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    async fn read_body(&mut self, n: usize) -> Result<(), String> {
        let start = self.body.len();
        self.body.resize(start + n, 0);
        self.io
            .read_exact(&mut self.body[start..])
            .await
            .map(drop)
            .map_err(|e| format!("read: {e}"))
    }
}

/// One gateway client: a request at a time on its own connection until the run is over.
pub(crate) async fn client_loop(run: Arc<Run>, mut conn: Conn, id: u64) -> Recorder {
    let mut rec = Recorder::default();
    let mut rng = Rng::new(0xC0FFEE ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    while let Some(seq) = run.next_seq().await {
        let started = Instant::now();
        let result = match &run.workload {
            Workload::Put(w) => {
                let r = w.request(seq, &mut rng);
                let body = format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    base64(&r.key),
                    base64(&r.value)
                );
                conn.post("/v3/kv/put", &body).await
            }
            Workload::Range(w) => {
                let r = &w.request;
                let mut body = format!(r#"{{"key":"{}""#, base64(&r.key));
                if !r.range_end.is_empty() {
                    body.push_str(&format!(r#","range_end":"{}""#, base64(&r.range_end)));
                }
                if r.limit > 0 {
                    body.push_str(&format!(r#","limit":"{}""#, r.limit));
                }
                if r.serializable {
                    body.push_str(r#","serializable":true"#);
                }
                body.push('}');
                conn.post("/v3/kv/range", &body).await
            }
            other => Err(format!(
                "--gateway runs put and range, not {}",
                other.name()
            )),
        };
        match result {
            Ok(_) => rec.record_ok(started.elapsed()),
            Err(e) => rec.record_err(&e),
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_is_standard_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }
}
