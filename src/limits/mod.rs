//! Bounds on what callers can make the server hold, shared by the REST and XMPP adapters and
//! the chat domain: token-bucket rate limiters keyed by caller (bounded in memory) and
//! connection caps in total and per IP address. Pure bookkeeping: no I/O, no protocol.

pub mod conns;
pub mod rate;

pub use conns::{ConnLimiter, ConnPermit, ConnRefusal};
pub use rate::{KeyedLimiter, TokenBucket};
