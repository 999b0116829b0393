//! The ALG step on real frames: active FTP through SNAT with a length-changing rewrite,
//! then data both ways on the control and data connections; passive FTP to a DNAT
//! server; TFTP through SNAT.

use super::*;
use crate::wire::parse::L4Summary;

/// (sport, dport, seq, ack, payload) of a forwarded TCP frame, after checking every
/// checksum and the IP addresses.
fn seg(f: &[u8], src: [u8; 4], dst: [u8; 4]) -> (u16, u16, u32, u32, Vec<u8>) {
    verify_frame(f).unwrap();
    let p = crate::wire::parse_frame(f).unwrap();
    assert_eq!((&p.src[..4], &p.dst[..4]), (&src[..], &dst[..]));
    let L4Summary::Tcp(t) = p.l4 else {
        panic!("not TCP")
    };
    let (s, e) = crate::nat::alg::tcp_payload(f, &p).unwrap();
    (t.sport, t.dport, t.seq, t.ack, f[s..e].to_vec())
}

fn from_host(seg: Vec<u8>) -> Vec<u8> {
    from_host4(H4, SERVER4, 6, &seg)
}

fn from_server(src: [u8; 4], seg: Vec<u8>) -> Vec<u8> {
    ip4(GW1, ROUTER, src, GW_OUT4, 64, 6, &seg)
}

#[test]
fn active_ftp_through_snat_rewrites_port_and_keeps_both_directions_in_sequence() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    // The control connection.
    let (v, _) = g.send(&from_host(tcp(40000, 21, 100, 0, SYN, b"")), 0);
    fwd(v, 1);
    let (v, _) = g.send(
        &from_server(SERVER4, tcp(21, 40000, 5000, 101, SYN | ACK, b"")),
        1,
    );
    fwd(v, 0);
    let (v, _) = g.send(&from_host(tcp(40000, 21, 101, 5001, ACK, b"")), 0);
    fwd(v, 1);
    // PORT with the inside address: sent on rewritten to the pool address, one byte
    // longer ("10,0,0,2" → "192,0,2,1"), as a new frame; the original is consumed.
    let port_cmd = b"PORT 10,0,0,2,4,1\r\n";
    let (v, _) = g.send(
        &from_host(tcp(40000, 21, 101, 5001, ACK | PSH, port_cmd)),
        0,
    );
    assert_eq!(v, Verdict::Consumed);
    let out = g.take_emitted();
    assert_eq!(out.len(), 1);
    let (port, f) = &out[0];
    assert_eq!(*port, 1);
    assert_eq!(&f[0..6], &ROUTER);
    let (sp, dp, seq, ack, pl) = seg(f, GW_OUT4, SERVER4);
    assert_eq!((sp, dp, seq, ack), (40000, 21, 101, 5001));
    assert_eq!(pl, b"PORT 192,0,2,1,4,1\r\n");
    assert_eq!(
        f.len(),
        from_host(tcp(40000, 21, 101, 5001, ACK | PSH, port_cmd)).len() + 1
    );
    // The server acknowledges the 20 bytes it got (121): the client sees 120.
    let reply = b"200 PORT command successful\r\n";
    let (v, f) = g.send(
        &from_server(SERVER4, tcp(21, 40000, 5001, 121, ACK | PSH, reply)),
        1,
    );
    fwd(v, 0);
    assert_eq!(seg(&f, SERVER4, H4), (21, 40000, 5001, 120, reply.to_vec()));
    // The client's next command (seq 120) reaches the server at 121.
    let (v, f) = g.send(
        &from_host(tcp(
            40000,
            21,
            120,
            5001 + reply.len() as u32,
            ACK | PSH,
            b"LIST\r\n",
        )),
        0,
    );
    fwd(v, 1);
    assert_eq!(
        seg(&f, GW_OUT4, SERVER4),
        (
            40000,
            21,
            121,
            5001 + reply.len() as u32,
            b"LIST\r\n".to_vec()
        )
    );
    // The server's data connection from port 20 to the pool address, port 1025: related,
    // translated to the client; data both ways.
    let (v, f) = g.send(&from_server(SERVER4, tcp(20, 1025, 9000, 0, SYN, b"")), 1);
    fwd(v, 0);
    assert_eq!(seg(&f, SERVER4, H4).0..=seg(&f, SERVER4, H4).1, 20..=1025);
    let (v, f) = g.send(&from_host(tcp(1025, 20, 7000, 9001, SYN | ACK, b"")), 0);
    fwd(v, 1);
    assert_eq!(seg(&f, GW_OUT4, SERVER4).0, 1025);
    let (v, _) = g.send(
        &from_server(SERVER4, tcp(20, 1025, 9001, 7001, ACK, b"")),
        1,
    );
    fwd(v, 0);
    let (v, f) = g.send(
        &from_server(
            SERVER4,
            tcp(20, 1025, 9001, 7001, ACK | PSH, b"file contents"),
        ),
        1,
    );
    fwd(v, 0);
    assert_eq!(
        seg(&f, SERVER4, H4),
        (20, 1025, 9001, 7001, b"file contents".to_vec())
    );
    let (v, f) = g.send(&from_host(tcp(1025, 20, 7001, 9014, ACK | PSH, b"up")), 0);
    fwd(v, 1);
    assert_eq!(
        seg(&f, GW_OUT4, SERVER4),
        (1025, 20, 7001, 9014, b"up".to_vec())
    );
    let c = g.shared.conntrack().counters();
    assert_eq!(
        (c.alg_expectations, c.alg_related, c.alg_rewrite_failed),
        (1, 1, 0)
    );
    // A malformed PORT is passed unchanged, in place, and counted.
    let bad = b"PORT 10,0,0\r\n";
    let sent = from_host(tcp(40000, 21, 126, 5030, ACK | PSH, bad));
    let (v, f) = g.send(&sent, 0);
    fwd(v, 1);
    assert_eq!(seg(&f, GW_OUT4, SERVER4).4, bad.to_vec());
    assert_eq!(g.shared.conntrack().counters().alg_ftp_invalid, 1);
}

#[test]
fn passive_ftp_to_a_dnat_server_rewrites_227_to_the_public_address_and_shifts_the_acks() {
    let cfg = format!(
        "{}\n[[dnat]]\nproto = \"tcp\"\nmatch = \"192.0.2.1:21\"\nto = \"10.0.0.2:21\"\n",
        crate::config::EMBEDDED_DEFAULT
    );
    let mut g = Gw::with_config(&cfg);
    g.resolve_v4_neighbours();
    let client = SERVER4;
    let to_server = |seg: Vec<u8>| ip4(GW1, ROUTER, client, GW_OUT4, 64, 6, &seg);
    let from_inside = |seg: Vec<u8>| from_host4(H4, client, 6, &seg);
    let (v, f) = g.send(&to_server(tcp(50000, 21, 100, 0, SYN, b"")), 1);
    fwd(v, 0);
    assert_eq!(seg(&f, client, H4).1, 21);
    let (v, _) = g.send(&from_inside(tcp(21, 50000, 5000, 101, SYN | ACK, b"")), 0);
    fwd(v, 1);
    let (v, _) = g.send(
        &to_server(tcp(50000, 21, 101, 5001, ACK | PSH, b"PASV\r\n")),
        1,
    );
    fwd(v, 0);
    // The server announces its inside address; the client gets the public one, one byte
    // longer.
    let pasv = b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n";
    let (v, _) = g.send(&from_inside(tcp(21, 50000, 5001, 107, ACK | PSH, pasv)), 0);
    assert_eq!(v, Verdict::Consumed);
    let out = g.take_emitted();
    assert_eq!(out.len(), 1);
    let (sp, dp, sq, ak, pl) = seg(&out[0].1, GW_OUT4, client);
    assert_eq!((out[0].0, sp, dp, sq, ak), (1, 21, 50000, 5001, 107));
    assert_eq!(pl, b"227 Entering Passive Mode (192,0,2,1,195,80).\r\n");
    // The client acknowledges what it got; the server sees its own numbering.
    let got = 5001 + pl.len() as u32;
    let (v, f) = g.send(&to_server(tcp(50000, 21, 107, got, ACK, b"")), 1);
    fwd(v, 0);
    assert_eq!(seg(&f, client, H4).3, got - 1);
    // The server's next reply is moved on by one in the client's numbering.
    let (v, f) = g.send(
        &from_inside(tcp(21, 50000, got - 1, 107, ACK | PSH, b"150 ok\r\n")),
        0,
    );
    fwd(v, 1);
    assert_eq!(seg(&f, GW_OUT4, client).2, got);
    // The client's data connection to the public address, port 50000: related,
    // translated to the inside server.
    let (v, f) = g.send(&to_server(tcp(40001, 50000, 1, 0, SYN, b"")), 1);
    fwd(v, 0);
    assert_eq!(seg(&f, client, H4).1, 50000);
    let (v, f) = g.send(&from_inside(tcp(50000, 40001, 900, 2, SYN | ACK, b"")), 0);
    fwd(v, 1);
    assert_eq!(seg(&f, GW_OUT4, client).0, 50000);
    assert_eq!(g.shared.conntrack().counters().alg_related, 1);
}

#[test]
fn tftp_read_request_through_snat_lets_the_servers_answer_from_another_port_in() {
    let mut g = Gw::new();
    g.resolve_v4_neighbours();
    let rrq = b"\x00\x01blob\x00octet\x00";
    let (v, f) = g.send(&from_host4(H4, SERVER4, 17, &udp(3000, 69, rrq)), 0);
    fwd(v, 1);
    verify_frame(&f).unwrap();
    // The answer comes from the server's transfer port, not 69: related, to the client.
    let data = b"\x00\x03\x00\x01hello";
    let (v, f) = g.send(
        &ip4(
            GW1,
            ROUTER,
            SERVER4,
            GW_OUT4,
            64,
            17,
            &udp(40123, 3000, data),
        ),
        1,
    );
    fwd(v, 0);
    verify_frame(&f).unwrap();
    let p = crate::wire::parse_frame(&f).unwrap();
    assert_eq!(&p.dst[..4], &H4);
    assert!(matches!(
        p.l4,
        L4Summary::Udp {
            sport: 40123,
            dport: 3000,
            ..
        }
    ));
    // The client's acknowledgement goes back out translated.
    let (v, f) = g.send(
        &from_host4(H4, SERVER4, 17, &udp(3000, 40123, b"\x00\x04\x00\x01")),
        0,
    );
    fwd(v, 1);
    assert_eq!(&crate::wire::parse_frame(&f).unwrap().src[..4], &GW_OUT4);
    let c = g.shared.conntrack().counters();
    assert_eq!((c.alg_expectations, c.alg_related), (1, 1));
    // Without the request's expectation, another port of the server is refused.
    let (v, _) = g.send(
        &ip4(
            GW1,
            ROUTER,
            [198, 51, 100, 8],
            GW_OUT4,
            64,
            17,
            &udp(40124, 3000, data),
        ),
        1,
    );
    assert!(matches!(v, Verdict::Drop(_)), "{v:?}");
}
