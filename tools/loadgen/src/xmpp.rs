//! XMPP client connections: TCP, STARTTLS, direct TLS and WebSocket (RFC 7395, subprotocol
//! `xmpp`), SASL PLAIN, resource binding and initial presence, then a split into a [`Reader`]
//! that yields frames and a [`Writer`] that batches elements. Failures are [`XmppError`] values
//! sorted into the categories a report counts; nothing here panics on server input.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::net;
use crate::xml::{self, Frame, Framer};

/// Largest element accepted from a server.
const MAX_ELEMENT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP, no TLS.
    Tcp,
    /// TCP upgraded with STARTTLS.
    Starttls,
    /// TLS from the first byte (XEP-0368 direct TLS).
    Tls,
    /// WebSocket, RFC 7395 framing.
    Ws,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub domain: String,
    pub transport: Transport,
    pub ws_path: String,
    pub tls: Arc<rustls::ClientConfig>,
}

/// One account's login.
#[derive(Clone, Debug)]
pub struct Account {
    /// SASL authentication identity (the JID's local part).
    pub authcid: String,
    pub password: String,
    /// Bare JID messages are addressed to.
    pub jid: String,
}

/// Why a connection failed, by report category.
#[derive(Debug)]
pub enum XmppError {
    Connect(io::Error),
    Io(io::Error),
    Tls(io::Error),
    Ws(String),
    Frame(xml::FrameError),
    Auth(String),
    Stream(String),
    Protocol(String),
    Closed,
    Timeout,
}

impl std::fmt::Display for XmppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmppError::Connect(e) => write!(f, "connect: {e}"),
            XmppError::Io(e) => write!(f, "i/o: {e}"),
            XmppError::Tls(e) => write!(f, "tls: {e}"),
            XmppError::Ws(e) => write!(f, "websocket: {e}"),
            XmppError::Frame(e) => write!(f, "{e}"),
            XmppError::Auth(c) => write!(f, "authentication failed: {c}"),
            XmppError::Stream(c) => write!(f, "stream error: {c}"),
            XmppError::Protocol(c) => write!(f, "protocol: {c}"),
            XmppError::Closed => f.write_str("connection closed by server"),
            XmppError::Timeout => f.write_str("timed out"),
        }
    }
}

impl XmppError {
    /// The counter this error goes to in a report.
    pub fn category(&self) -> &'static str {
        match self {
            XmppError::Connect(_) => "connect",
            XmppError::Io(_) | XmppError::Closed => "closed",
            XmppError::Tls(_) => "tls",
            XmppError::Ws(_) => "websocket",
            XmppError::Frame(_) | XmppError::Protocol(_) => "protocol",
            XmppError::Auth(_) => "auth",
            XmppError::Stream(_) => "stream",
            XmppError::Timeout => "timeout",
        }
    }
}

impl From<io::Error> for XmppError {
    fn from(e: io::Error) -> Self {
        XmppError::Io(e)
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

/// TLS client settings. Certificates are NOT verified: this is a load tool for test servers
/// with self-signed certificates on loopback.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn tls_wrap(ep: &Endpoint, io: BoxIo) -> Result<BoxIo, XmppError> {
    let name = rustls::pki_types::ServerName::try_from(ep.domain.clone())
        .map_err(|e| XmppError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let s = tokio_rustls::TlsConnector::from(ep.tls.clone())
        .connect(name, io)
        .await
        .map_err(XmppError::Tls)?;
    Ok(Box::new(s))
}

async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    framer: &mut Framer,
    chunk: &mut [u8],
) -> Result<Frame, XmppError> {
    loop {
        if let Some(f) = framer.next_frame().map_err(XmppError::Frame)? {
            return Ok(f);
        }
        let n = rd.read(chunk).await?;
        if n == 0 {
            return Err(XmppError::Closed);
        }
        framer.extend(&chunk[..n]);
    }
}

fn ws_frame(m: Message) -> Option<Frame> {
    match m {
        Message::Text(_) | Message::Binary(_) => {
            let data = m.into_data().to_vec();
            match xml::local_name(&data) {
                b"open" => Some(Frame::StreamOpen(data)),
                b"close" => Some(Frame::StreamEnd),
                _ => Some(Frame::Element(data)),
            }
        }
        Message::Close(_) => Some(Frame::StreamEnd),
        _ => None,
    }
}

/// The receiving half of a connection.
pub struct Reader {
    kind: ReaderKind,
}

enum ReaderKind {
    Stream {
        rd: ReadHalf<BoxIo>,
        framer: Framer,
        chunk: Box<[u8]>,
    },
    Ws(SplitStream<WebSocketStream<BoxIo>>),
}

impl Reader {
    /// The next frame; a stream error element becomes `Err(XmppError::Stream)`.
    pub async fn next(&mut self) -> Result<Frame, XmppError> {
        let f = match &mut self.kind {
            ReaderKind::Stream { rd, framer, chunk } => read_frame(rd, framer, chunk).await?,
            ReaderKind::Ws(ws) => loop {
                match ws.next().await {
                    None => return Err(XmppError::Closed),
                    Some(Err(e)) => return Err(XmppError::Ws(e.to_string())),
                    Some(Ok(m)) => {
                        if let Some(f) = ws_frame(m) {
                            break f;
                        }
                    }
                }
            },
        };
        if let Frame::Element(e) = &f {
            if xml::name(e) == b"stream:error" || xml::local_name(e) == b"error" {
                return Err(XmppError::Stream(stream_error_condition(e)));
            }
        }
        Ok(f)
    }

    /// Next element, skipping stream headers; a stream end is `Err(Closed)`.
    pub async fn element(&mut self) -> Result<Vec<u8>, XmppError> {
        loop {
            match self.next().await? {
                Frame::Element(e) => return Ok(e),
                Frame::StreamOpen(_) => {}
                Frame::StreamEnd => return Err(XmppError::Closed),
            }
        }
    }

    fn restart(&mut self) {
        if let ReaderKind::Stream { framer, .. } = &mut self.kind {
            framer.reset();
        }
    }
}

fn stream_error_condition(e: &[u8]) -> String {
    // The first child element names the condition.
    let inner = e
        .iter()
        .position(|&c| c == b'>')
        .map_or(&e[..0], |i| &e[i + 1..]);
    if inner.first() == Some(&b'<') {
        String::from_utf8_lossy(xml::name(inner)).into_owned()
    } else {
        "unknown".into()
    }
}

/// The sending half; `push` queues, `flush` writes (one syscall for a stream transport).
pub struct Writer {
    kind: WriterKind,
    buf: String,
}

enum WriterKind {
    Stream(WriteHalf<BoxIo>),
    Ws(SplitSink<WebSocketStream<BoxIo>, Message>),
}

impl Writer {
    pub async fn push(&mut self, element: String) -> Result<(), XmppError> {
        match &mut self.kind {
            WriterKind::Stream(_) => {
                self.buf.push_str(&element);
                Ok(())
            }
            WriterKind::Ws(ws) => ws
                .feed(Message::text(xml::qualify_for_ws(element)))
                .await
                .map_err(|e| XmppError::Ws(e.to_string())),
        }
    }

    /// Queue a pre-built run of elements (stream transports only take it as one write; on
    /// WebSocket the caller must push elements one by one).
    pub fn push_raw(&mut self, elements: &str) {
        self.buf.push_str(elements);
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.kind, WriterKind::Ws(_))
    }

    pub async fn flush(&mut self) -> Result<(), XmppError> {
        match &mut self.kind {
            WriterKind::Stream(w) => {
                if !self.buf.is_empty() {
                    w.write_all(self.buf.as_bytes()).await?;
                    self.buf.clear();
                }
                w.flush().await?;
                Ok(())
            }
            WriterKind::Ws(ws) => ws.flush().await.map_err(|e| XmppError::Ws(e.to_string())),
        }
    }

    pub async fn send(&mut self, element: String) -> Result<(), XmppError> {
        self.push(element).await?;
        self.flush().await
    }

    /// Close the stream politely and shut the socket down.
    pub async fn close(mut self) {
        let end = if self.is_ws() {
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
        } else {
            "</stream:stream>"
        };
        let _ = self.send(end.to_string()).await;
        match &mut self.kind {
            WriterKind::Stream(w) => {
                let _ = w.shutdown().await;
            }
            WriterKind::Ws(ws) => {
                let _ = ws.close().await;
            }
        }
    }
}

/// An authenticated, bound connection.
pub struct Session {
    pub reader: Reader,
    pub writer: Writer,
}

async fn open_stream(ep: &Endpoint, r: &mut Reader, w: &mut Writer) -> Result<Vec<u8>, XmppError> {
    let open = if w.is_ws() {
        xml::ws_open(&ep.domain)
    } else {
        xml::stream_open(&ep.domain)
    };
    w.send(open).await?;
    match r.next().await? {
        Frame::StreamOpen(_) => {}
        Frame::Element(e) => {
            return Err(XmppError::Protocol(format!(
                "expected a stream header, got <{}>",
                String::from_utf8_lossy(xml::name(&e))
            )))
        }
        Frame::StreamEnd => return Err(XmppError::Closed),
    }
    let features = r.element().await?;
    if xml::local_name(&features) != b"features" {
        return Err(XmppError::Protocol("expected stream features".into()));
    }
    Ok(features)
}

/// Open a plain TCP stream and negotiate STARTTLS on it.
async fn starttls(ep: &Endpoint, mut io: BoxIo) -> Result<BoxIo, XmppError> {
    let mut framer = Framer::new(MAX_ELEMENT);
    let mut chunk = vec![0u8; 4096];
    io.write_all(xml::stream_open(&ep.domain).as_bytes())
        .await?;
    let mut features = None;
    while features.is_none() {
        match read_frame(&mut io, &mut framer, &mut chunk).await? {
            Frame::StreamOpen(_) => {}
            Frame::Element(e) => features = Some(e),
            Frame::StreamEnd => return Err(XmppError::Closed),
        }
    }
    if !features
        .as_deref()
        .is_some_and(|f| xml::contains(f, "<starttls"))
    {
        return Err(XmppError::Protocol("server does not offer STARTTLS".into()));
    }
    io.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await?;
    match read_frame(&mut io, &mut framer, &mut chunk).await? {
        Frame::Element(e) if xml::local_name(&e) == b"proceed" => {}
        _ => return Err(XmppError::Protocol("STARTTLS refused".into())),
    }
    if framer.pending() > 0 {
        return Err(XmppError::Protocol("data after <proceed/>".into()));
    }
    tls_wrap(ep, io).await
}

/// Connect the transport and split it, before any XMPP login.
pub async fn connect(ep: &Endpoint, src: Option<IpAddr>) -> Result<(Reader, Writer), XmppError> {
    let tcp = net::connect(ep.addr, src)
        .await
        .map_err(XmppError::Connect)?;
    let mut io: BoxIo = Box::new(tcp);
    match ep.transport {
        Transport::Tcp | Transport::Ws => {}
        Transport::Tls => io = tls_wrap(ep, io).await?,
        Transport::Starttls => io = starttls(ep, io).await?,
    }
    if ep.transport == Transport::Ws {
        let url = format!("ws://{}{}", ep.addr, ep.ws_path);
        let mut req = url
            .into_client_request()
            .map_err(|e| XmppError::Ws(e.to_string()))?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        let (ws, _resp) = tokio_tungstenite::client_async(req, io)
            .await
            .map_err(|e| XmppError::Ws(e.to_string()))?;
        let (sink, stream) = ws.split();
        return Ok((
            Reader {
                kind: ReaderKind::Ws(stream),
            },
            Writer {
                kind: WriterKind::Ws(sink),
                buf: String::new(),
            },
        ));
    }
    let (rd, wr) = tokio::io::split(io);
    Ok((
        Reader {
            kind: ReaderKind::Stream {
                rd,
                framer: Framer::new(MAX_ELEMENT),
                chunk: vec![0u8; 8 * 1024].into_boxed_slice(),
            },
        },
        Writer {
            kind: WriterKind::Stream(wr),
            buf: String::new(),
        },
    ))
}

/// Wait for the `iq` answering `id`, ignoring anything else; `Err` on an error reply.
async fn await_iq(r: &mut Reader, id: &str) -> Result<Vec<u8>, XmppError> {
    loop {
        let e = r.element().await?;
        if xml::name(&e) == b"iq" && xml::attr(&e, "id") == Some(id.as_bytes()) {
            if xml::attr(&e, "type") == Some(b"result") {
                return Ok(e);
            }
            return Err(XmppError::Protocol(format!(
                "iq {id} failed: {}",
                String::from_utf8_lossy(&e)
            )));
        }
    }
}

/// Full login: transport, SASL PLAIN, bind, optional session, optional initial presence.
pub async fn login(
    ep: &Endpoint,
    acct: &Account,
    src: Option<IpAddr>,
    presence: bool,
) -> Result<Session, XmppError> {
    let (mut r, mut w) = connect(ep, src).await?;
    let features = open_stream(ep, &mut r, &mut w).await?;
    if !xml::contains(&features, "<mechanism>PLAIN</mechanism>") {
        return Err(XmppError::Auth("server offers no SASL PLAIN".into()));
    }
    let creds = format!("\0{}\0{}", acct.authcid, acct.password);
    let b64 = base64::engine::general_purpose::STANDARD.encode(creds);
    w.send(format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{b64}</auth>"
    ))
    .await?;
    loop {
        let e = r.element().await?;
        match xml::local_name(&e) {
            b"success" => break,
            b"failure" => {
                let inner = e
                    .iter()
                    .position(|&c| c == b'>')
                    .map_or(&e[..0], |i| &e[i + 1..]);
                let cond = if inner.first() == Some(&b'<') {
                    String::from_utf8_lossy(xml::name(inner)).into_owned()
                } else {
                    "failure".into()
                };
                return Err(XmppError::Auth(cond));
            }
            b"challenge" => return Err(XmppError::Auth("unexpected SASL challenge".into())),
            _ => {}
        }
    }
    r.restart();
    let features = open_stream(ep, &mut r, &mut w).await?;
    w.send(
        "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
            .to_string(),
    )
    .await?;
    let res = await_iq(&mut r, "bind1").await?;
    if xml::child_text(&res, "jid").is_none() {
        return Err(XmppError::Protocol("bind result without a JID".into()));
    }
    let session_required = xml::contains(&features, "urn:ietf:params:xml:ns:xmpp-session")
        && !xml::contains(&features, "<optional");
    if session_required {
        w.send(
            "<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
                .to_string(),
        )
        .await?;
        await_iq(&mut r, "sess1").await?;
    }
    if presence {
        w.send("<presence/>".to_string()).await?;
    }
    Ok(Session {
        reader: r,
        writer: w,
    })
}

/// XEP-0077 in-band registration of one account (before authentication).
/// `Ok(false)` when the account already exists.
pub async fn register(ep: &Endpoint, username: &str, password: &str) -> Result<bool, XmppError> {
    let (mut r, mut w) = connect(ep, None).await?;
    open_stream(ep, &mut r, &mut w).await?;
    w.send(format!(
        "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>{}</username>\
         <password>{}</password></query></iq>",
        xml::escape(username),
        xml::escape(password)
    ))
    .await?;
    let result = loop {
        let e = r.element().await?;
        if xml::name(&e) == b"iq" && xml::attr(&e, "id") == Some(b"reg1") {
            if xml::attr(&e, "type") == Some(b"result") {
                break Ok(true);
            }
            if xml::contains(&e, "<conflict") {
                break Ok(false);
            }
            break Err(XmppError::Protocol(format!(
                "registration refused: {}",
                String::from_utf8_lossy(&e)
            )));
        }
    };
    w.close().await;
    result
}
