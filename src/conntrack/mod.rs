//! The connection tracker: a pure-Rust library over parsed packets, shared by all worker
//! lcores. See `docs/DESIGN.md` and [`table`] for the table's layout and locking rules.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod alg;
pub mod conn;
pub mod credits;
pub mod event_format;
pub mod events;
pub mod format;
pub mod free_set;
pub mod key;
pub mod l4;
pub mod learn;
pub mod state;
pub mod stats;
pub mod sweep;
pub mod sync;
pub mod table;
pub mod timeouts;
pub mod tracker;
pub mod zones;

pub use conn::{TcpState, DIR_ORIG, DIR_REPLY};
pub use key::{ConnKey, KeyHasher};
pub use state::CtState;
pub use table::Hit;
pub use timeouts::{TimeoutAttr, TimeoutPolicy};
pub use tracker::{
    ConnHooks, ConnSnapshot, Conntrack, CtConfig, CtResult, CtWorker, OwnedCtWorker, PacketMeta,
    Refusal, ReplyTuples, DEFAULT_MAX_CONNS,
};

#[cfg(test)]
pub(crate) mod testct;
#[doc(hidden)]
pub mod testpkt;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_alg;
#[cfg(test)]
mod tests_events;
#[cfg(test)]
mod tests_learn;
