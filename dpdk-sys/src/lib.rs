//! Bindings to the system DPDK (being written).
