//! A small XMPP test client over real sockets: plain TCP (+ STARTTLS), direct TLS and WebSocket
//! (RFC 7395). It writes raw XML, so tests can send exactly the bytes a rule is about, and reads
//! elements with Parley's own framer (the server's reader is tested separately, beside it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use parley::xmpp::stream::{reader, Element, Framer, Limits, Packet};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const CLIENT_NS: &str = "jabber:client";
pub const STREAM_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
pub const WS_OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='127.0.0.1' version='1.0'/>";

/// Which listener and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Port 5222 without TLS (allowed on loopback by default).
    Tcp,
    /// Port 5222, upgraded with STARTTLS before authenticating.
    StartTls,
    /// Port 5223.
    DirectTls,
    /// Port 5291, `ws://`.
    Ws,
    /// Port 5291 with `ws.tls = true`: `wss://`.
    Wss,
}

/// A client socket before or after TLS, for WebSocket over either.
pub enum Sock {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Sock {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Sock::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Sock::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Sock {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Sock::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Sock::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Sock::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Sock::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Sock::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Sock::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<Sock>>),
    Closed,
}

pub struct Client {
    io: Io,
    framer: Framer,
    pub via: Via,
    /// The bound full JID, once bound.
    pub jid: String,
    /// How long `next` waits.
    pub patience: Duration,
}

/// The addresses of one test server's XMPP listeners.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub tcp: SocketAddr,
    pub tls: SocketAddr,
    pub ws: SocketAddr,
}

const LIMITS: Limits = Limits {
    max_stanza_bytes: 16 << 20,
    max_depth: 64,
    max_attributes: 256,
};

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn tls_connect(tcp: TcpStream) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

pub fn plain_b64(authcid: &str, secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\u{0}{authcid}\u{0}{secret}"))
}

impl Client {
    /// Like [`Client::connect`] over plain TCP, from the local address `ip` (another loopback
    /// address looks like another client to the server).
    pub async fn connect_from(addrs: Addrs, ip: std::net::IpAddr) -> Client {
        Client {
            io: Io::Plain(super::http::connect_from(ip, addrs.tcp).await),
            framer: Framer::new(LIMITS),
            via: Via::Tcp,
            jid: String::new(),
            patience: Duration::from_secs(10),
        }
    }

    /// Opens the socket (and TLS or the WebSocket handshake); no stream yet.
    pub async fn connect(addrs: Addrs, via: Via) -> Client {
        let io = match via {
            Via::Tcp | Via::StartTls => Io::Plain(TcpStream::connect(addrs.tcp).await.unwrap()),
            Via::DirectTls => {
                let tcp = TcpStream::connect(addrs.tls).await.unwrap();
                Io::Tls(Box::new(tls_connect(tcp).await))
            }
            Via::Ws | Via::Wss => {
                let tcp = TcpStream::connect(addrs.ws).await.unwrap();
                let (sock, scheme) = if via == Via::Wss {
                    (Sock::Tls(Box::new(tls_connect(tcp).await)), "wss")
                } else {
                    (Sock::Plain(tcp), "ws")
                };
                let mut req = format!("{scheme}://{}/", addrs.ws)
                    .into_client_request()
                    .unwrap();
                req.headers_mut()
                    .insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
                let (ws, resp) = tokio_tungstenite::client_async(req, sock)
                    .await
                    .expect("WebSocket handshake");
                assert_eq!(
                    resp.headers()
                        .get("Sec-WebSocket-Protocol")
                        .and_then(|v| v.to_str().ok()),
                    Some("xmpp"),
                    "the server must echo the xmpp subprotocol"
                );
                Io::Ws(Box::new(ws))
            }
        };
        Client {
            io,
            framer: Framer::new(LIMITS),
            via,
            jid: String::new(),
            patience: Duration::from_secs(10),
        }
    }

    /// TCP_NODELAY on a plain TCP connection, as real clients and load generators set it: a
    /// benchmark's small stanzas must not wait for Nagle's algorithm and delayed ACKs.
    pub fn nodelay(&self) {
        if let Io::Plain(s) = &self.io {
            let _ = s.set_nodelay(true);
        }
    }

    pub async fn send_raw(&mut self, xml: &str) {
        let _ = self.try_send_raw(xml).await;
    }

    pub async fn try_send_raw(&mut self, xml: &str) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => s.write_all(xml.as_bytes()).await,
            Io::Tls(s) => {
                s.write_all(xml.as_bytes()).await?;
                s.flush().await
            }
            Io::Ws(ws) => ws
                .send(Message::Text(xml.to_owned()))
                .await
                .map_err(std::io::Error::other),
            Io::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// The next element: stream headers come back as `stream`/`open`, the stream end as
    /// `end`; `None` when the socket closed.
    pub async fn next(&mut self) -> Option<Element> {
        let patience = self.patience;
        tokio::time::timeout(patience, self.next_inner())
            .await
            .unwrap_or_else(|_| panic!("no element from the server within {patience:?}"))
    }

    /// The next element if one arrives within `patience`; `None` when nothing does.
    pub async fn try_next(&mut self) -> Option<Element> {
        tokio::time::timeout(self.patience, self.next_inner())
            .await
            .ok()
            .flatten()
    }

    async fn next_inner(&mut self) -> Option<Element> {
        loop {
            if let Io::Ws(ws) = &mut self.io {
                let msg = match ws.next().await {
                    Some(Ok(m)) => m,
                    _ => return None,
                };
                match msg {
                    Message::Text(t) => {
                        let scope = [(String::new(), CLIENT_NS.to_owned())];
                        return Some(
                            reader::parse_element(t.as_bytes(), &scope, &LIMITS)
                                .unwrap_or_else(|e| panic!("server sent bad XML {e:?}: {t}")),
                        );
                    }
                    Message::Close(_) => return None,
                    _ => continue,
                }
            }
            match self.framer.next_packet() {
                Ok(Some(Packet::StreamStart(h))) => return Some(h),
                Ok(Some(Packet::Stanza(e))) => return Some(e),
                Ok(Some(Packet::StreamEnd)) => return Some(Element::new("end", "test")),
                Ok(None) => {}
                Err(e) => panic!("server sent bad XML: {e:?}"),
            }
            let mut buf = [0u8; 8192];
            let n = match &mut self.io {
                Io::Plain(s) => s.read(&mut buf).await.unwrap_or(0),
                Io::Tls(s) => s.read(&mut buf).await.unwrap_or(0),
                _ => 0,
            };
            if n == 0 {
                return None;
            }
            self.framer.push(&buf[..n]);
        }
    }

    /// Reads until an element matches `pred` (others are skipped).
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            match self.next().await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("stream closed while waiting for {what}"),
            }
        }
    }

    /// Reads until a stanza named `name` arrives.
    /// Enables message carbons, then goes online; with `caps`, announcing entity capabilities
    /// as a standard client does (the server's caps query is left unanswered: only the
    /// announcement matters), without them as the ConnectyCube SDK does. Returns once the
    /// presence is echoed.
    pub async fn carbons_online(&mut self, caps: bool) {
        let r = self
            .iq(
                "carbons",
                "<iq type='set' id='carbons'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
            )
            .await;
        assert_eq!(r.attr("type"), Some("result"));
        if caps {
            self.send_raw(
                "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
                 node='https://parley.test/carbons' ver='Zm9yIHRoZSBjYXJib25zIHRlc3Q='/></presence>",
            )
            .await;
        } else {
            self.send_raw("<presence/>").await;
        }
        let jid = self.jid.clone();
        self.expect("own presence echo", |e| {
            e.name == "presence" && e.attr("from") == Some(jid.as_str())
        })
        .await;
    }

    pub async fn expect_named(&mut self, name: &str) -> Element {
        self.expect(name, |e| e.name == name).await
    }

    /// The stream error condition the server closed with, after which the socket must close.
    pub async fn stream_error(&mut self) -> String {
        let err = self
            .expect("a stream error", |e| {
                e.name == "error" && e.ns == "http://etherx.jabber.org/streams"
            })
            .await;
        let cond = err
            .elements()
            .next()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        // Then `</stream:stream>` / `<close/>`, then the socket closes.
        loop {
            match self.next().await {
                None => break,
                Some(e) if e.name == "end" || e.name == "close" => {}
                Some(e) => panic!("unexpected element after the stream error: {e:?}"),
            }
        }
        cond
    }

    /// Sends our stream header; returns the stream features.
    pub async fn open(&mut self) -> Element {
        if matches!(self.via, Via::Ws | Via::Wss) {
            self.send_raw(WS_OPEN).await;
        } else {
            self.framer.reset();
            self.send_raw(STREAM_HEADER).await;
        }
        let header = self.next().await.expect("stream header");
        assert!(
            header.name == "stream" || header.name == "open",
            "{header:?}"
        );
        let f = self.next().await.expect("features");
        assert_eq!(f.name, "features", "{f:?}");
        f
    }

    pub async fn starttls(&mut self) {
        self.send_raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        let p = self.next().await.expect("proceed");
        assert_eq!(p.name, "proceed");
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Closed) else {
            panic!("STARTTLS on a non-TCP client");
        };
        self.io = Io::Tls(Box::new(tls_connect(tcp).await));
        self.framer.reset();
    }

    /// SASL PLAIN; returns `success` or the failure's condition element name.
    pub async fn auth(&mut self, authcid: &str, secret: &str) -> String {
        self.send_raw(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            plain_b64(authcid, secret)
        ))
        .await;
        let r = self.next().await.expect("SASL answer");
        match r.name.as_str() {
            "success" => "success".into(),
            "failure" => r
                .elements()
                .next()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            other => panic!("unexpected SASL answer {other}: {r:?}"),
        }
    }

    /// Binds (after the post-SASL restart); returns the full JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> String {
        let res = resource
            .map(|r| format!("<resource>{r}</resource>"))
            .unwrap_or_default();
        self.send_raw(&format!("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>")).await;
        let r = self.expect_named("iq").await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        let jid = r
            .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .map(|j| j.text())
            .expect("bound jid");
        self.jid = jid.clone();
        jid
    }

    /// Connects, authenticates as `{user}-{app}` with `secret`, binds; no presence sent.
    pub async fn login(addrs: Addrs, via: Via, local: &str, secret: &str) -> Client {
        Self::login_as(addrs, via, local, secret, None).await
    }

    pub async fn login_as(
        addrs: Addrs,
        via: Via,
        local: &str,
        secret: &str,
        resource: Option<&str>,
    ) -> Client {
        let mut c = Client::connect(addrs, via).await;
        c.open().await;
        if via == Via::StartTls {
            c.starttls().await;
            c.open().await;
        }
        assert_eq!(c.auth(local, secret).await, "success");
        c.open().await;
        c.bind(resource).await;
        c
    }

    /// Initial presence; waits for its echo.
    pub async fn available(&mut self) {
        self.send_raw("<presence/>").await;
        let jid = self.jid.clone();
        self.expect("own presence echo", |e| {
            e.name == "presence" && e.attr("from") == Some(jid.as_str())
        })
        .await;
    }

    /// An iq round trip: sends `xml` (which must carry `id`), returns the answer with that id.
    pub async fn iq(&mut self, id: &str, xml: &str) -> Element {
        self.send_raw(xml).await;
        self.expect("iq answer", |e| e.name == "iq" && e.attr("id") == Some(id))
            .await
    }

    /// The certificate (DER) the server presented on this TLS connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        let Io::Tls(tls) = &self.io else {
            return None;
        };
        Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
    }

    /// RFC 9266 `tls-exporter` channel-binding data of a TLS 1.3 connection (SCRAM `-PLUS`).
    pub fn tls_exporter(&self) -> Option<[u8; 32]> {
        let Io::Tls(s) = &self.io else { return None };
        let (_, conn) = s.get_ref();
        if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return None;
        }
        conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
    }

    /// Drops the socket without closing the stream.
    pub fn drop_socket(&mut self) {
        self.io = Io::Closed;
    }

    pub async fn close(&mut self) {
        if matches!(self.via, Via::Ws | Via::Wss) {
            self.send_raw("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
                .await;
        } else {
            self.send_raw("</stream:stream>").await;
        }
    }
}
