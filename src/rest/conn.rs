//! What one REST connection may hold: time to send a request head, idle time between keep-alive
//! requests, and the answer a connection over the caps gets.
//!
//! hyper's header-read timer starts as soon as it waits for a request head, so an idle
//! keep-alive connection waits on the same timer. `HeadTimer` gives that one timer two limits:
//! `http.keepalive_idle_secs` while no byte of the next request has arrived, and
//! `http.header_timeout_secs` from the first byte on (from the connection's start for its
//! first request), whichever ends first. The socket wrapper notes when bytes arrive.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// When the current request head began arriving, shared by the socket and the timer.
pub struct ConnClock {
    start: Instant,
    header_timeout: Duration,
    /// Milliseconds after `start` (plus one) of the first byte since the head wait began;
    /// 0: none yet.
    first_byte: AtomicU64,
    /// The connection's first head wait counts from the connection's start.
    fresh: AtomicBool,
}

impl ConnClock {
    pub fn new(header_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            header_timeout,
            first_byte: AtomicU64::new(1),
            fresh: AtomicBool::new(true),
        })
    }

    fn saw_bytes(&self) {
        if self.first_byte.load(Ordering::Relaxed) == 0 {
            let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            self.first_byte
                .store(ms.saturating_add(1), Ordering::Relaxed);
        }
    }

    /// hyper starts waiting for a request head.
    fn head_wait_started(&self) {
        if !self.fresh.swap(false, Ordering::Relaxed) {
            self.first_byte.store(0, Ordering::Relaxed);
        }
    }

    /// The head must be complete by then, once its first byte is in.
    fn head_deadline(&self) -> Option<Instant> {
        match self.first_byte.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.start + Duration::from_millis(ms - 1) + self.header_timeout),
        }
    }
}

/// The TCP socket, noting when request bytes arrive.
pub struct ClockedStream {
    inner: TcpStream,
    clock: Arc<ConnClock>,
}

impl ClockedStream {
    pub fn new(inner: TcpStream, clock: Arc<ConnClock>) -> Self {
        Self { inner, clock }
    }
}

impl AsyncRead for ClockedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            me.clock.saw_bytes();
        }
        r
    }
}

impl AsyncWrite for ClockedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// hyper's timer for one connection (hyper uses it only for the request-head wait, which it
/// configures as `http.keepalive_idle_secs`).
pub struct HeadTimer(pub Arc<ConnClock>);

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.head_wait_started();
        Box::pin(HeadSleep {
            idle_deadline: deadline,
            armed: deadline,
            clock: self.0.clone(),
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
        })
    }
}

/// Ends at the idle deadline, or at the head deadline once the head has begun.
struct HeadSleep {
    idle_deadline: Instant,
    armed: Instant,
    clock: Arc<ConnClock>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = self.get_mut();
        let due = match me.clock.head_deadline() {
            Some(head) => head.min(me.idle_deadline),
            None => me.idle_deadline,
        };
        if due != me.armed {
            me.armed = due;
            me.sleep.as_mut().reset(due.into());
        }
        me.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadSleep {}

/// Answers a connection refused by the connection caps: a 503 in the one error shape with
/// `Retry-After`, written at once, then the socket is drained briefly (so the client reads the
/// answer rather than a reset) and closed. At most `budget` in all.
pub async fn refuse(mut tcp: TcpStream, message: &str, budget: Duration) {
    let body = serde_json::json!({ "errors": { "base": [message] } }).to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(budget, async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}
