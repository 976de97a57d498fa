//! One client connection's byte pipe, whatever carries it: TCP (with STARTTLS), direct TLS, or
//! WebSocket (RFC 7395, one element per text frame). Reads packets under the configured limits
//! and a bytes-per-second token bucket; writes elements with the framing's namespace rules.
//! Knows stream headers and stream errors, nothing about stanzas.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::element::{escape_into, Element};
use super::reader::{parse_element, Fault, Framer, Limits, Packet};
use crate::xmpp::ns;
use crate::xmpp::stanza::StreamCondition;

/// A TCP socket, before or after TLS.
pub enum RawIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for RawIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RawIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            RawIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RawIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            RawIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            RawIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RawIo::Plain(s) => Pin::new(s).poll_flush(cx),
            RawIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RawIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            RawIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why no packet came.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the socket (or the WebSocket).
    Closed,
    /// The input broke a rule: close the stream with this condition.
    Fault(Fault),
    Io(io::Error),
}

/// Bytes-per-second limit with a burst of one maximum stanza.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64, burst: usize) -> Self {
        Bucket {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens; returns how long the reader must pause to stay within the rate.
    fn take(&mut self, n: usize) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            // `try_`: a tiny configured rate must not make this panic on overflow.
            Duration::try_from_secs_f64(-self.tokens / self.rate).unwrap_or(Duration::MAX)
        }
    }
}

enum Inner {
    Xml { io: RawIo, framer: Framer },
    Ws { ws: Box<WebSocketStream<RawIo>> },
    Gone,
}

/// One client connection.
pub struct Transport {
    inner: Inner,
    limits: Limits,
    bucket: Bucket,
    write_timeout: Duration,
    /// TLS is in place (direct TLS, after STARTTLS, or `wss://`).
    pub secure: bool,
    pub peer: SocketAddr,
}

/// Per-connection settings taken from config.
#[derive(Clone, Copy, Debug)]
pub struct TransportConfig {
    pub limits: Limits,
    pub bytes_per_sec: u64,
    pub write_timeout: Duration,
}

impl Transport {
    /// A TCP (or direct-TLS) XML stream.
    pub fn xml(io: RawIo, peer: SocketAddr, cfg: TransportConfig) -> Self {
        let secure = matches!(io, RawIo::Tls(_));
        Transport {
            inner: Inner::Xml {
                io,
                framer: Framer::new(cfg.limits),
            },
            limits: cfg.limits,
            bucket: Bucket::new(cfg.bytes_per_sec, cfg.limits.max_stanza_bytes),
            write_timeout: cfg.write_timeout,
            secure,
            peer,
        }
    }

    /// Completes the WebSocket handshake (echoing the `xmpp` subprotocol) on `io`.
    pub async fn websocket(
        io: RawIo,
        peer: SocketAddr,
        cfg: TransportConfig,
    ) -> Result<Self, WsError> {
        let secure = matches!(io, RawIo::Tls(_));
        let ws_cfg = WebSocketConfig {
            max_message_size: Some(cfg.limits.max_stanza_bytes),
            max_frame_size: Some(cfg.limits.max_stanza_bytes),
            ..Default::default()
        };
        let ws =
            tokio_tungstenite::accept_hdr_async_with_config(io, echo_xmpp, Some(ws_cfg)).await?;
        Ok(Transport {
            inner: Inner::Ws { ws: Box::new(ws) },
            limits: cfg.limits,
            bucket: Bucket::new(cfg.bytes_per_sec, cfg.limits.max_stanza_bytes),
            write_timeout: cfg.write_timeout,
            secure,
            peer,
        })
    }

    /// A transport with no socket (what a connection keeps after handing its socket over).
    pub fn detached(peer: SocketAddr, cfg: TransportConfig) -> Self {
        Transport {
            inner: Inner::Gone,
            limits: cfg.limits,
            bucket: Bucket::new(cfg.bytes_per_sec, cfg.limits.max_stanza_bytes),
            write_timeout: cfg.write_timeout,
            secure: false,
            peer,
        }
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self.inner, Inner::Ws { .. })
    }

    /// STARTTLS is possible: a plain TCP stream.
    pub fn can_starttls(&self) -> bool {
        matches!(
            self.inner,
            Inner::Xml {
                io: RawIo::Plain(_),
                ..
            }
        )
    }

    /// This connection's RFC 9266 `tls-exporter` channel-binding data (32 bytes, label
    /// `EXPORTER-Channel-Binding`, no context), for SCRAM `-PLUS`. Only on TLS 1.3: on TLS 1.2
    /// the exporter is safe only with the extended master secret, which is not checked here.
    pub fn tls_exporter(&self) -> Option<[u8; 32]> {
        let tls = match &self.inner {
            Inner::Xml {
                io: RawIo::Tls(t), ..
            } => t,
            Inner::Ws { ws } => match ws.get_ref() {
                RawIo::Tls(t) => t,
                RawIo::Plain(_) => return None,
            },
            _ => return None,
        };
        let (_, conn) = tls.get_ref();
        if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return None;
        }
        conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
    }

    /// The next packet. Cancel-safe: bytes already read stay buffered.
    pub async fn next_packet(&mut self) -> Result<Packet, ReadError> {
        match &mut self.inner {
            Inner::Xml { io, framer } => loop {
                if let Some(p) = framer.next_packet().map_err(ReadError::Fault)? {
                    return Ok(p);
                }
                // Straight into the framer's buffer: a read chunk held here would sit in every
                // idle connection's future for as long as it waits.
                let buf = framer.read_buf();
                let room = buf.capacity() - buf.len();
                let n = io.read_buf(buf).await.map_err(ReadError::Io)?;
                if n == 0 {
                    return Err(ReadError::Closed);
                }
                framer.did_read(n, room);
                let pause = self.bucket.take(n);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            },
            Inner::Ws { ws } => loop {
                let msg = match ws.next().await {
                    None => return Err(ReadError::Closed),
                    Some(Ok(m)) => m,
                    Some(Err(WsError::Capacity(_))) => {
                        return Err(ReadError::Fault(Fault::PolicyViolation))
                    }
                    Some(Err(WsError::Io(e))) => return Err(ReadError::Io(e)),
                    Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                        return Err(ReadError::Closed)
                    }
                    Some(Err(_)) => return Err(ReadError::Fault(Fault::NotWellFormed)),
                };
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => return Err(ReadError::Closed),
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Binary(_) | Message::Frame(_) => {
                        return Err(ReadError::Fault(Fault::NotWellFormed))
                    }
                };
                if text.trim().is_empty() {
                    // Whitespace keepalives some clients send between frames.
                    continue;
                }
                let pause = self.bucket.take(text.len());
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                let scope = [(String::new(), ns::CLIENT.to_owned())];
                let el = parse_element(text.as_bytes(), &scope, &self.limits)
                    .map_err(ReadError::Fault)?;
                return Ok(if el.is("open", ns::FRAMING) {
                    Packet::StreamStart(el)
                } else if el.is("close", ns::FRAMING) {
                    Packet::StreamEnd
                } else {
                    Packet::Stanza(el)
                });
            },
            Inner::Gone => Err(ReadError::Closed),
        }
    }

    async fn write_text(&mut self, text: String) -> io::Result<()> {
        let limit = self.write_timeout;
        let fut = async {
            match &mut self.inner {
                Inner::Xml { io, .. } => {
                    io.write_all(text.as_bytes()).await?;
                    io.flush().await
                }
                Inner::Ws { ws } => ws.send(Message::Text(text)).await.map_err(ws_io),
                Inner::Gone => Err(io::ErrorKind::NotConnected.into()),
            }
        };
        tokio::time::timeout(limit, fut)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Our stream header (`<stream:stream>` or `<open/>`), answering the client's.
    pub async fn send_header(&mut self, domain: &str, id: &str) -> io::Result<()> {
        let text = self.header_text(domain, id);
        self.write_text(text).await
    }

    /// Our stream header and then `features`: one write (one segment) on a TCP stream, where
    /// every login sends this pair twice; two frames on a WebSocket.
    pub async fn send_header_and(
        &mut self,
        domain: &str,
        id: &str,
        features: &Element,
    ) -> io::Result<()> {
        let mut text = self.header_text(domain, id);
        match self.inner {
            Inner::Ws { .. } => {
                self.write_text(text).await?;
                self.send(features).await
            }
            _ => {
                text.push_str(&features.to_stream_xml());
                self.write_text(text).await
            }
        }
    }

    fn header_text(&self, domain: &str, id: &str) -> String {
        match self.inner {
            Inner::Ws { .. } => Element::new("open", ns::FRAMING)
                .with_attr("from", domain)
                .with_attr("id", id)
                .with_attr("version", "1.0")
                .with_attr("xml:lang", "en")
                .to_standalone_xml(),
            _ => {
                let mut s = format!(
                    "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' from='",
                    ns::CLIENT,
                    ns::STREAMS
                );
                escape_into(&mut s, domain, true);
                s.push_str("' id='");
                escape_into(&mut s, id, true);
                s.push_str("' version='1.0' xml:lang='en'>");
                s
            }
        }
    }

    /// Writes one top-level element.
    pub async fn send(&mut self, el: &Element) -> io::Result<()> {
        let text = match self.inner {
            Inner::Ws { .. } => el.to_standalone_xml(),
            _ => el.to_stream_xml(),
        };
        self.write_text(text).await
    }

    /// Writes several top-level elements: one write on a TCP stream (a queue of stanzas for a
    /// busy connection costs one syscall and few segments, not one each); one frame each on a
    /// WebSocket, flushed once.
    pub async fn send_all(&mut self, els: &[Element]) -> io::Result<()> {
        match self.inner {
            Inner::Ws { .. } => {
                let limit = self.write_timeout;
                let Inner::Ws { ws } = &mut self.inner else {
                    return Err(io::ErrorKind::NotConnected.into());
                };
                let fut = async {
                    for el in els {
                        ws.feed(Message::Text(el.to_standalone_xml()))
                            .await
                            .map_err(ws_io)?;
                    }
                    ws.flush().await.map_err(ws_io)
                };
                tokio::time::timeout(limit, fut)
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
            }
            _ => {
                let mut text = String::with_capacity(256 * els.len());
                for el in els {
                    el.write_stream_xml(&mut text);
                }
                self.write_text(text).await
            }
        }
    }

    /// Sends a stream error with an RFC 6120 condition, then closes the stream.
    pub async fn fail(&mut self, condition: StreamCondition) {
        let _ = self.send(&condition.to_element()).await;
        self.close().await;
    }

    /// Closes the stream (`</stream:stream>` or `<close/>`) and the socket.
    pub async fn close(&mut self) {
        let end = match self.inner {
            Inner::Ws { .. } => Element::new("close", ns::FRAMING).to_standalone_xml(),
            _ => "</stream:stream>".to_owned(),
        };
        let _ = self.write_text(end).await;
        let limit = self.write_timeout;
        match std::mem::replace(&mut self.inner, Inner::Gone) {
            Inner::Xml { mut io, .. } => {
                let _ = tokio::time::timeout(limit, io.shutdown()).await;
            }
            Inner::Ws { mut ws } => {
                let _ = tokio::time::timeout(limit, SinkExt::close(&mut ws)).await;
            }
            Inner::Gone => {}
        }
    }

    /// Drops the socket without a word (used when a stream is resumed elsewhere).
    pub fn abandon(&mut self) {
        self.inner = Inner::Gone;
    }

    /// Upgrades a plain TCP stream to TLS after `<proceed/>`; the stream restarts.
    pub async fn starttls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        match std::mem::replace(&mut self.inner, Inner::Gone) {
            Inner::Xml {
                io: RawIo::Plain(tcp),
                framer,
            } => {
                let mut framer = framer;
                framer.reset();
                let tls = tokio::time::timeout(self.write_timeout, acceptor.accept(tcp))
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))?;
                self.inner = Inner::Xml {
                    io: RawIo::Tls(Box::new(tls)),
                    framer,
                };
                self.secure = true;
                Ok(())
            }
            other => {
                self.inner = other;
                Err(io::ErrorKind::Unsupported.into())
            }
        }
    }

    /// A stream restart (after SASL success): the next packet must be a new stream header.
    pub fn restart(&mut self) {
        if let Inner::Xml { framer, .. } = &mut self.inner {
            framer.reset();
        }
    }
}

fn ws_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// RFC 7395: echo the `xmpp` subprotocol (the official SDK aborts without it).
#[allow(clippy::result_large_err)]
fn echo_xmpp(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "xmpp");
    if offered {
        resp.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    }
    Ok(resp)
}
