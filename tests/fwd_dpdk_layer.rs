//! The safe DPDK layer against real EAL: every mbuf is freed exactly once, whether it is
//! dropped, drained, cleared, refused by a full burst or handed to a device by TX. Mempool
//! usage counts prove it. One test (EAL initialises once per process).
#![cfg(feature = "dpdk")]

mod common;

use common::*;
use ctgate::dpdk::{self, Eal, Mbuf, MbufBurst, Mempool, Port, PortConfig, DEFAULT_MBUF_BUF_SIZE};

fn mbuf_with(pool: &Mempool, bytes: &[u8]) -> Mbuf {
    let mut m = pool.alloc().expect("mbuf");
    m.extend_from_slice(bytes).expect("append");
    m
}

#[test]
fn mbufs_are_freed_exactly_once_through_bursts_and_tx() {
    let _lock = dpdk_lock();
    let s = Scratch::new("layer");
    let mut args = vec!["ctgate-test".to_string()];
    args.extend(s.eal_args("0"));
    // net_ring's RX and TX share one ring: what we send comes back.
    args.extend(["--vdev".into(), "net_ring0".into()]);
    let eal = Eal::init(&args).expect("EAL init");
    assert!(
        Eal::init(&args).is_err(),
        "EAL initialises once per process"
    );

    // No per-lcore cache, so in_use() is exact.
    let pool = Mempool::new(&eal, "layer_test", 4095, 0, DEFAULT_MBUF_BUF_SIZE, -1).unwrap();
    assert_eq!(pool.in_use(), 0);

    // Mbuf: data access and Drop.
    let mut m = mbuf_with(&pool, &[1, 2, 3]);
    assert_eq!(m.data(), &[1, 2, 3]);
    assert_eq!(m.len(), 3);
    m.data_mut()[0] = 9;
    assert_eq!(m.data(), &[9, 2, 3]);
    assert!(
        m.extend_from_slice(&[0; 4000]).is_err(),
        "no room: an error, not a panic"
    );
    assert_eq!(pool.in_use(), 1);
    drop(m);
    assert_eq!(pool.in_use(), 0);

    // MbufBurst: full burst gives the mbuf back; drain frees what is not taken; clear frees.
    let mut b: MbufBurst<4> = MbufBurst::new();
    for i in 0..4u8 {
        b.push(mbuf_with(&pool, &[i])).unwrap();
    }
    let refused = b.push(mbuf_with(&pool, &[4])).expect_err("burst is full");
    assert_eq!(refused.data(), &[4]);
    drop(refused);
    assert_eq!(pool.in_use(), 4);
    let firsts: Vec<Mbuf> = b.drain().take(1).collect();
    assert!(b.is_empty());
    assert_eq!(
        pool.in_use(),
        1,
        "the 3 mbufs not taken from drain were freed"
    );
    drop(firsts);
    for i in 0..3u8 {
        b.push(mbuf_with(&pool, &[i])).unwrap();
    }
    b.clear();
    assert_eq!(pool.in_use(), 0);
    b.push(mbuf_with(&pool, &[7])).unwrap();
    drop(b);
    assert_eq!(pool.in_use(), 0, "dropping a burst frees its mbufs");

    // TX hands mbufs to the device (not freed by us), RX gives them back (ours again).
    let ports = dpdk::available_ports(&eal);
    assert_eq!(ports.len(), 1, "net_ring0 probed");
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
    let mut txq = port.tx_queue(0).unwrap();
    let mut rxq = port.rx_queue(0).unwrap();
    assert!(port.tx_queue(1).is_none());

    let mut out: MbufBurst = MbufBurst::new();
    for i in 0..5u8 {
        out.push(mbuf_with(&pool, &[i, i, i])).unwrap();
    }
    assert_eq!(txq.tx_burst(&mut out), 5);
    assert!(out.is_empty());
    assert_eq!(pool.in_use(), 5, "the device holds them; nothing was freed");
    drop(out);
    assert_eq!(pool.in_use(), 5, "an emptied burst frees nothing");

    let mut back: MbufBurst = MbufBurst::new();
    assert_eq!(rxq.rx_burst(&mut back), 5);
    let data: Vec<Vec<u8>> = back.as_slice().iter().map(|m| m.data().to_vec()).collect();
    assert_eq!(data, (0..5u8).map(|i| vec![i, i, i]).collect::<Vec<_>>());
    assert_eq!(rxq.rx_burst(&mut back), 0);
    drop(back);
    assert_eq!(pool.in_use(), 0, "received mbufs are ours and freed once");

    // A TX queue that refuses part of a burst leaves the rest with us: net_ring's ring
    // (1024 slots) fills up eventually.
    let mut sent_total = 0;
    let mut kept = 0;
    for _ in 0..100 {
        let mut burst: MbufBurst = MbufBurst::new();
        while !burst.is_full() {
            burst.push(mbuf_with(&pool, &[0xab])).unwrap();
        }
        let sent = txq.tx_burst(&mut burst);
        sent_total += sent;
        kept = burst.len();
        assert_eq!(sent + kept, 32);
        if kept > 0 {
            assert_eq!(
                burst.as_slice()[0].data(),
                &[0xab],
                "unsent mbufs stay valid, in order"
            );
            break;
        }
    }
    assert!(kept > 0, "the ring never filled");
    assert_eq!(
        pool.in_use() as usize,
        sent_total,
        "unsent mbufs were freed when the burst dropped"
    );
    let mut drainer: MbufBurst = MbufBurst::new();
    while rxq.rx_burst(&mut drainer) > 0 {
        drainer.clear();
    }
    assert_eq!(pool.in_use(), 0);

    port.close().unwrap();
    eal.cleanup().unwrap();
}
