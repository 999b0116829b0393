//! State sync between ctgate instances (high availability): the connection records,
//! the message codec with its optional HMAC, and the reliable channel to each peer.
//!
//! * [`record`]: one connection on the wire ([`SyncRecord`]);
//! * [`codec`]: a message (header, batch of records, MAC) and why a datagram is dropped;
//! * [`auth`]: the HMAC-SHA256 key and its file;
//! * [`endpoint`]: sequence numbers, acks, the retransmission window and bulk resync
//!   ([`SyncEndpoint`]), over a [`SyncTable`] the caller provides.
//!
//! All of it is pure: the socket and the tracker are the caller's.

pub mod auth;
pub mod codec;
pub mod consumer;
pub mod endpoint;
pub mod record;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_consumer;
#[cfg(test)]
mod tests_tracker;
pub mod tracker_table;

pub use auth::SyncKey;
pub use codec::{DropReason, Message};
pub use endpoint::{PeerState, PeerStatus, SyncEndpoint, SyncParams, SyncTable};
pub use record::{SyncOp, SyncRecord};
