//! Tracker counters: one cache-padded block per worker (written only by its worker, read
//! by the control lcore without locks) plus one for the control lcore itself.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// A block of tracker counters.
        #[derive(Default, Debug)]
        #[repr(C, align(64))]
        pub struct CtCounters {
            $( $(#[$doc])* pub $name: AtomicU64, )*
        }

        /// A plain copy of the counters, summed over blocks.
        #[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
        pub struct CtCountersSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl CtCounters {
            /// Adds this block into `s`.
            pub fn add_to(&self, s: &mut CtCountersSnapshot) {
                $( s.$name += self.$name.load(Ordering::Relaxed); )*
            }
        }

        impl CtCountersSnapshot {
            /// (name, value) pairs in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![ $( (stringify!($name), self.$name), )* ]
            }
        }
    };
}

counters! {
    /// Connections created.
    created,
    /// Connections removed by the sweep because they expired.
    expired,
    /// Expired connections removed by an insert at a zone or global limit.
    reclaimed,
    /// Connections removed by flush or by TCP port reuse.
    removed,
    /// New connections refused: zone limit.
    refused_zone_limit,
    /// New connections refused: global `maxconns`.
    refused_max_conns,
    /// New connections refused: record pool or overflow buckets exhausted.
    refused_table_full,
    /// New connections refused: the reply tuple is already in use.
    refused_tuple_collision,
    /// New connections refused: NAT found no free tuple.
    nat_exhausted,
    /// Invalid: TCP segment out of window or with invalid flags.
    invalid_tcp,
    /// Invalid: first packet that may not create a connection (SYN+ACK, ICMP reply…).
    invalid_new,
    /// Invalid: ICMP error related to no known connection.
    invalid_icmp_unrelated,
    /// Invalid: IP fragment (not reassembled).
    invalid_fragment,
    /// Lookups that had to retry because the record changed under them.
    lookup_retries,
    /// Connection events dropped because the shard's event ring was full.
    events_lost,
    /// ALG: expectations created (FTP `PORT`/`EPRT`/`227`/`229`, TFTP requests).
    alg_expectations,
    /// ALG: expectations refused (global or per-connection limit, full bucket).
    alg_expectations_refused,
    /// ALG: data connections created from an expectation (RELATED).
    alg_related,
    /// ALG: FTP announcements that do not parse or name a third party's address: passed
    /// unchanged (OVS marks them `inv`).
    alg_ftp_invalid,
    /// ALG: address rewrites or sequence skews not done (no room, side table full): the
    /// segment passed unchanged.
    alg_rewrite_failed,
}

/// Increments a counter that only the calling thread writes (no locked instruction).
#[inline(always)]
pub fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Adds to a counter that only the calling thread writes.
#[inline(always)]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}
