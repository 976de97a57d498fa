//! A minimal HTTP/1.1 client over one kept-alive TCP connection: JSON or empty bodies,
//! Content-Length or chunked answers, one reconnect when a kept-alive socket went stale.
//! Enough for Parley's REST API on loopback; not a general client.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MAX_BODY: usize = 16 << 20;

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub struct Client {
    addr: SocketAddr,
    host: String,
    conn: Option<BufReader<TcpStream>>,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// `http://host:port` → (host, port); only plain HTTP.
pub fn parse_base(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => Ok((
            h.to_string(),
            p.parse().map_err(|_| format!("{url}: bad port"))?,
        )),
        _ => Ok((hostport.to_string(), 80)),
    }
}

impl Client {
    pub fn new(addr: SocketAddr, host: &str) -> Self {
        Client {
            addr,
            host: host.to_string(),
            conn: None,
        }
    }

    /// Send one request; `body` is sent as JSON when given.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n",
            self.host
        );
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        if let Some(b) = body {
            req.push_str("Content-Type: application/json\r\n");
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        // A reused connection may have been closed by the server while idle: retry once fresh.
        let reused = self.conn.is_some();
        match self.exchange(&bytes).await {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.conn = None;
                self.exchange(&bytes).await
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange(&mut self, bytes: &[u8]) -> io::Result<Response> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(bad("no connection"));
        };
        let res = Self::roundtrip(conn, bytes).await;
        match &res {
            Ok((_, keep)) if *keep => {}
            _ => self.conn = None,
        }
        res.map(|(r, _)| r)
    }

    async fn roundtrip(
        conn: &mut BufReader<TcpStream>,
        bytes: &[u8],
    ) -> io::Result<(Response, bool)> {
        conn.get_mut().write_all(bytes).await?;
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut length = None;
        let mut chunked = false;
        let mut keep = true;
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Err(bad("truncated headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    length = Some(v.parse::<usize>().map_err(|_| bad("bad content-length"))?);
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.to_ascii_lowercase().contains("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    keep = !v.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                if body.len() + size > MAX_BODY {
                    return Err(bad("body too large"));
                }
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        line.clear();
                        if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                conn.read_exact(&mut body[at..]).await?;
                line.clear();
                conn.read_line(&mut line).await?;
            }
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(bad("body too large"));
            }
            body.resize(n, 0);
            conn.read_exact(&mut body).await?;
        } else if status != 204 && status != 304 {
            conn.take(MAX_BODY as u64).read_to_end(&mut body).await?;
            keep = false;
        }
        Ok((Response { status, body }, keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        assert_eq!(
            parse_base("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            parse_base("http://localhost/x").unwrap(),
            ("localhost".into(), 80)
        );
        assert_eq!(parse_base("http://[::1]:9").unwrap(), ("[::1]".into(), 9));
        assert!(parse_base("https://x").is_err());
    }

    /// A fake server answering canned responses, one per request, counting its accepts.
    async fn fake(
        answers: Vec<&'static str>,
    ) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepts = std::sync::Arc::new(AtomicUsize::new(0));
        let count = accepts.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut s = BufReader::new(s);
                loop {
                    // Read one request head (these requests have no body).
                    let mut line = String::new();
                    let mut closed = false;
                    loop {
                        line.clear();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            closed = true;
                            break;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let Some(a) = answers.next().filter(|_| !closed) else {
                        break;
                    };
                    s.get_mut().write_all(a.as_bytes()).await.unwrap();
                    if a.contains("Connection: close") {
                        break;
                    }
                }
            }
        });
        (addr, accepts)
    }

    #[tokio::test]
    async fn keeps_alive_and_reads_length_and_chunked_bodies() {
        let (addr, accepts) = fake(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"a\": true}",
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"b\"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let mut c = Client::new(addr, "x");
        let r = c.request("GET", "/a", &[], None).await.unwrap();
        assert!(r.ok());
        assert_eq!(r.json().unwrap()["a"], true);
        let r = c
            .request("GET", "/b", &[("CB-Token", "t")], None)
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.json().unwrap()["b"], 1);
        let r = c.request("GET", "/c", &[], None).await.unwrap();
        assert_eq!((r.status, r.ok()), (404, false));
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The server closed after the 404: the next request opens a new connection.
        let r = c.request("GET", "/d", &[], None).await.unwrap();
        assert!(r.ok() && r.body.is_empty());
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
