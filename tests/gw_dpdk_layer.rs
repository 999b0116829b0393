//! The worker loop's held and generated frames against real EAL (net_ring loopback: what
//! the worker sends comes back to it): a step holds frames in its slots, releases one,
//! keeps one until the end, asks for a slot that is taken, forwards one and generates a
//! frame per input. Every mbuf is freed exactly once: the mempool's usage count is back to
//! 0 when the worker returns, and the counters add up.
#![cfg(feature = "dpdk")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ctgate::dpdk::{self, Eal, MbufBurst, Mempool, Port, PortConfig, Tsc, DEFAULT_MBUF_BUF_SIZE};
use ctgate::pipeline::worker::{Worker, WorkerCounters};
use ctgate::pipeline::{DropReason, MacAddr, PacketStep, StepSink, Verdict};

const FRESH: [u8; 6] = [1; 6];
const GENERATED: [u8; 6] = [2; 6];
const RELEASED: [u8; 6] = [3; 6];
const FORWARDED: [u8; 6] = [4; 6];

/// Holds fresh frames 0 and 1 in slots 0 and 1, asks for slot 0 again for frame 2 (taken:
/// the worker drops the new frame), forwards frame 3; generates one frame per fresh one;
/// releases slot 0 once four fresh frames were seen and never releases slot 1. Frames
/// that come back (generated, released, forwarded) are dropped as `Local`.
struct HoldStep {
    port: u16,
    fresh: u32,
    pending_gen: u32,
    released: bool,
}

impl PacketStep for HoldStep {
    fn process(&mut self, frame: &mut [u8], _in_port: u16) -> Verdict {
        if frame[0..6] != FRESH {
            return Verdict::Drop(DropReason::Local);
        }
        let n = self.fresh;
        self.fresh += 1;
        self.pending_gen += 1;
        match n {
            0 => Verdict::Hold(0),
            1 => Verdict::Hold(1),
            2 => Verdict::Hold(0),
            _ => {
                frame[0..6].copy_from_slice(&FORWARDED);
                Verdict::Forward(self.port)
            }
        }
    }

    fn hold_slots(&self) -> usize {
        2
    }

    fn service(&mut self, sink: &mut dyn StepSink) {
        for _ in 0..self.pending_gen {
            let mut f = vec![0u8; 60];
            f[0..6].copy_from_slice(&GENERATED);
            f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            sink.emit(self.port, &f);
        }
        self.pending_gen = 0;
        if self.fresh >= 4 && !self.released {
            sink.send_held(0, self.port, MacAddr(RELEASED));
            // Releasing an empty slot, or one out of range, does nothing.
            sink.send_held(0, self.port, MacAddr(RELEASED));
            sink.drop_held(7, DropReason::Local, self.port);
            self.released = true;
        }
    }
}

#[test]
fn held_and_generated_mbufs_are_freed_exactly_once() {
    let _lock = dpdk_lock();
    let s = Scratch::new("gwlayer");
    let mut args = vec!["ctgate-test".to_string()];
    args.extend(s.eal_args("0,1"));
    args.extend(["--vdev".into(), "net_ring0".into()]);
    let eal = Eal::init(&args).expect("EAL init");
    let pool = Mempool::new(&eal, "gw_layer", 1023, 0, DEFAULT_MBUF_BUF_SIZE, -1).unwrap();
    let ports = dpdk::available_ports(&eal);
    assert_eq!(ports.len(), 1);
    let conf = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 64,
        tx_desc: 64,
        rss: false,
        mtu: 0,
    };
    let mut port = Port::configure(&eal, ports[0], &conf, &pool).unwrap();
    port.start().unwrap();
    let id = port.id();
    let mut txq = port.tx_queue(0).unwrap();
    let rxq = port.rx_queue(0).unwrap();

    // Four fresh frames into the ring before the worker starts.
    let mut b: MbufBurst = MbufBurst::new();
    for i in 0..4u8 {
        let mut m = pool.alloc().unwrap();
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&FRESH);
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        f[14] = i;
        m.extend_from_slice(&f).unwrap();
        b.push(m).unwrap();
    }
    assert_eq!(txq.tx_burst(&mut b), 4);
    assert_eq!(pool.in_use(), 4);

    let counters = Arc::new(WorkerCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let step = HoldStep {
        port: id,
        fresh: 0,
        pending_gen: 0,
        released: false,
    };
    let worker = Worker::new(
        vec![rxq],
        vec![txq],
        step,
        Arc::clone(&counters),
        Arc::clone(&stop),
        Tsc::hz(&eal),
    )
    .unwrap()
    .with_mempool(pool);
    let lcore = dpdk::worker_lcores(&eal)[0];
    dpdk::launch(&eal, lcore, move || worker.run()).unwrap();

    // 4 fresh + 4 generated + 1 released + 1 forwarded come in; once all ten were
    // received, frames are only freed (nothing more is generated), down to the one kept
    // in slot 1.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(counters.snapshot().rx >= 10 && pool.in_use() == 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        pool.in_use(),
        1,
        "only the frame kept in slot 1 is still allocated (rx={})",
        counters.snapshot().rx
    );
    stop.store(true, Ordering::SeqCst);
    assert_eq!(dpdk::wait_lcore(&eal, lcore), 0);
    assert_eq!(
        pool.in_use(),
        0,
        "the held frame was freed when the worker stopped"
    );

    let snap = counters.snapshot();
    assert_eq!(snap.rx, 10, "{snap:?}");
    assert_eq!(snap.tx, 6, "4 generated, 1 released, 1 forwarded: {snap:?}");
    assert_eq!(snap.drops.get(DropReason::HoldQueueFull), 1, "{snap:?}");
    assert_eq!(snap.drops.get(DropReason::Local), 6, "{snap:?}");
    assert_eq!(snap.drops.get(DropReason::NeighUnresolved), 1, "{snap:?}");
    assert_eq!(snap.drops.total(), 8, "{snap:?}");

    port.close().unwrap();
    eal.cleanup().unwrap();
}
