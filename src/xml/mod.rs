//! XML as data, for every layer: the owned element tree and its escaping-correct writer
//! (`element`), and which strings XML 1.0 allows as names and characters (`names`). Pure values
//! and functions, no I/O. It must not import any adapter (`xmpp`, `rest`) or know a protocol's
//! namespaces: a writer's surroundings (declared namespaces, a fixed prefix) come in as a
//! [`Scope`].

pub mod element;
pub mod names;

pub use element::{escape_into, Element, Node, Prefixed, Scope};
