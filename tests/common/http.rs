//! A deliberately small HTTP/1.1 client over a real TCP socket, so tests see exactly the bytes
//! the server sends (status, headers, body).

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Clone)]
pub struct Http {
    pub addr: SocketAddr,
    /// The local address to connect from (another loopback address looks like another client).
    pub local: Option<IpAddr>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The messages under `errors.<field>`.
    pub fn field_error(&self, field: &str) -> Option<String> {
        self.json()["errors"][field].as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, local: None }
    }

    /// The same server, reached from `ip` (e.g. `127.0.0.2`).
    pub fn via_ip(&self, ip: IpAddr) -> Self {
        Self {
            addr: self.addr,
            local: Some(ip),
        }
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Resp {
        let mut stream = match self.local {
            None => TcpStream::connect(self.addr).await.expect("connect"),
            Some(ip) => connect_from(ip, self.addr).await,
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.map(|(ct, b)| {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
            b
        });
        req.push_str(&format!(
            "Content-Length: {}\r\n\r\n",
            body.map_or(0, <[u8]>::len)
        ));
        stream.write_all(req.as_bytes()).await.expect("write");
        if let Some(b) = body {
            stream.write_all(b).await.expect("write body");
        }
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        parse(&raw)
    }

    fn token_header(token: Option<&str>) -> Vec<(&str, &str)> {
        token.map(|t| vec![("CB-Token", t)]).unwrap_or_default()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.request("GET", path, &Self::token_header(token), None)
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.request("DELETE", path, &Self::token_header(token), None)
            .await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        let b = body.to_string();
        self.request(
            "POST",
            path,
            &Self::token_header(token),
            Some(("application/json;charset=utf-8", b.as_bytes())),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        let b = body.to_string();
        self.request(
            "PUT",
            path,
            &Self::token_header(token),
            Some(("application/json;charset=utf-8", b.as_bytes())),
        )
        .await
    }

    pub async fn post_form(&self, path: &str, token: Option<&str>, form: &str) -> Resp {
        self.request(
            "POST",
            path,
            &Self::token_header(token),
            Some(("application/x-www-form-urlencoded", form.as_bytes())),
        )
        .await
    }
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A TCP connection to `to` from the local address `ip`.
pub async fn connect_from(ip: IpAddr, to: SocketAddr) -> TcpStream {
    let sock = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .expect("socket");
    sock.bind(SocketAddr::new(ip, 0))
        .expect("bind the local address");
    sock.connect(to).await.expect("connect")
}
