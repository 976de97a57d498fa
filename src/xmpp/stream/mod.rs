//! The XMPP stream layer: bytes and WebSocket frames in, packets out; elements in, bytes out.
//! Owns buffers, limits, TLS and the WebSocket handshake. Handlers above never see XML text.

pub mod element;
pub mod reader;
pub mod tls;
pub mod transport;

pub use element::{Element, Node};
pub use reader::{Fault, Framer, Limits, Packet};
pub use transport::Transport;
