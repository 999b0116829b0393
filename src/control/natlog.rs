//! NAT binding records for the logs operators keep (who used which outside address and
//! port, when): an RFC 5424 syslog line and RFC 7011 IPFIX messages with the NAT
//! information elements of RFC 8158 / IANA, built from the tracker's connection events.
//!
//! Only connections with NAT are logged: `[NEW]` gives a create record (natEvent 1),
//! `[DESTROY]` a delete record (natEvent 2). The inside address/port is the original
//! source, the outside one the reply tuple's destination (the translated source), the
//! destination the original destination; ICMP carries its identifier as the port.
//! Pure formatting: no I/O here.

use crate::conntrack::event_format::linux_proto_name;
use crate::conntrack::events::{CtEvent, EventKind};
use std::net::IpAddr;

/// One NAT binding event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatRecord {
    /// True for a create (natEvent 1), false for a delete (natEvent 2).
    pub create: bool,
    /// Wall clock, microseconds since the epoch.
    pub ts_us: u64,
    pub proto: u8,
    pub zone: u16,
    pub inside: (IpAddr, u16),
    pub outside: (IpAddr, u16),
    pub dest: (IpAddr, u16),
}

impl NatRecord {
    /// The record of a create or destroy event of a NATed connection, else `None`.
    pub fn of(e: &CtEvent) -> Option<NatRecord> {
        let create = match e.kind {
            EventKind::New => true,
            EventKind::Destroy => false,
            EventKind::Update => return None,
        };
        if e.nat == 0 {
            return None;
        }
        Some(NatRecord {
            create,
            ts_us: e.ts_us,
            proto: e.orig.proto,
            zone: e.zone(),
            inside: (e.orig.src_ip(), e.orig.sport),
            outside: (e.reply.dst_ip(), e.reply.dport_or_id()),
            dest: (e.orig.dst_ip(), e.orig.dport_or_id()),
        })
    }

    /// The RFC 5424 line (facility local0, severity info; no trailing newline):
    /// `<134>1 2026-12-01T22:00:00.123456Z HOST ctgate - NAT [nat@32473 event="create" proto="udp" zone="0" inside="10.0.0.2:4000" outside="192.0.2.1:1024" dest="192.0.2.2:53"] create udp 10.0.0.2:4000 -> 192.0.2.1:1024 dst 192.0.2.2:53 zone 0`.
    pub fn syslog_line(&self, host: &str) -> String {
        let ev = if self.create { "create" } else { "delete" };
        let p = linux_proto_name(self.proto);
        let a = |x: &(IpAddr, u16)| match x.0 {
            IpAddr::V6(v6) => format!("[{v6}]:{}", x.1),
            v4 => format!("{v4}:{}", x.1),
        };
        let (i, o, d) = (a(&self.inside), a(&self.outside), a(&self.dest));
        format!(
            "<134>1 {} {} ctgate - NAT [nat@32473 event=\"{ev}\" proto=\"{p}\" zone=\"{}\" inside=\"{i}\" outside=\"{o}\" dest=\"{d}\"] {ev} {p} {i} -> {o} dst {d} zone {}",
            rfc3339_us(self.ts_us),
            if host.is_empty() { "-" } else { host },
            self.zone,
            self.zone
        )
    }
}

impl crate::conntrack::ConnKey {
    /// The port, or for ICMP the identifier.
    fn dport_or_id(&self) -> u16 {
        if crate::conntrack::key::is_icmp(self.proto) {
            self.sport
        } else {
            self.dport
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of a time in microseconds since the epoch.
pub fn rfc3339_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        us % 1_000_000
    )
}

/// IPFIX template ids: IPv4 and IPv6 NAT records.
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;

/// (information element id, length) of the templates, in record order.
const FIELDS_V4: [(u16, u16); 10] = [
    (323, 8), // observationTimeMilliseconds
    (230, 1), // natEvent
    (4, 1),   // protocolIdentifier
    (8, 4),   // sourceIPv4Address
    (225, 4), // postNATSourceIPv4Address
    (7, 2),   // sourceTransportPort
    (227, 2), // postNAPTSourceTransportPort
    (12, 4),  // destinationIPv4Address
    (11, 2),  // destinationTransportPort
    (234, 4), // ingressVRFID (the zone)
];
const FIELDS_V6: [(u16, u16); 10] = [
    (323, 8),
    (230, 1),
    (4, 1),
    (27, 16),  // sourceIPv6Address
    (281, 16), // postNATSourceIPv6Address
    (7, 2),
    (227, 2),
    (28, 16), // destinationIPv6Address
    (11, 2),
    (234, 4),
];

/// Builds IPFIX messages (RFC 7011) of NAT records for one observation domain.
#[derive(Debug, Default)]
pub struct IpfixEncoder {
    /// Data records sent so far (the header's sequence number).
    pub sequence: u32,
    pub domain: u32,
}

impl IpfixEncoder {
    /// One message: the template set when `templates`, then a data set per address
    /// family of `recs`. `export_secs` is the header's export time.
    pub fn message(&mut self, export_secs: u32, templates: bool, recs: &[NatRecord]) -> Vec<u8> {
        let mut m = Vec::with_capacity(64 + recs.len() * 64);
        m.extend_from_slice(&10u16.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes()); // length, set below
        m.extend_from_slice(&export_secs.to_be_bytes());
        m.extend_from_slice(&self.sequence.to_be_bytes());
        m.extend_from_slice(&self.domain.to_be_bytes());
        if templates {
            let start = m.len();
            m.extend_from_slice(&2u16.to_be_bytes());
            m.extend_from_slice(&0u16.to_be_bytes());
            for (id, fields) in [(TEMPLATE_V4, &FIELDS_V4), (TEMPLATE_V6, &FIELDS_V6)] {
                m.extend_from_slice(&id.to_be_bytes());
                m.extend_from_slice(&(fields.len() as u16).to_be_bytes());
                for (ie, len) in fields {
                    m.extend_from_slice(&ie.to_be_bytes());
                    m.extend_from_slice(&len.to_be_bytes());
                }
            }
            let len = (m.len() - start) as u16;
            m[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        for v6 in [false, true] {
            let fam: Vec<&NatRecord> = recs.iter().filter(|r| r.inside.0.is_ipv6() == v6).collect();
            if fam.is_empty() {
                continue;
            }
            let start = m.len();
            let id = if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
            m.extend_from_slice(&id.to_be_bytes());
            m.extend_from_slice(&0u16.to_be_bytes());
            for r in fam {
                m.extend_from_slice(&(r.ts_us / 1000).to_be_bytes());
                m.push(if r.create { 1 } else { 2 });
                m.push(r.proto);
                let ip = |m: &mut Vec<u8>, a: IpAddr| match a {
                    IpAddr::V4(a) => m.extend_from_slice(&a.octets()),
                    IpAddr::V6(a) => m.extend_from_slice(&a.octets()),
                };
                ip(&mut m, r.inside.0);
                ip(&mut m, r.outside.0);
                m.extend_from_slice(&r.inside.1.to_be_bytes());
                m.extend_from_slice(&r.outside.1.to_be_bytes());
                ip(&mut m, r.dest.0);
                m.extend_from_slice(&r.dest.1.to_be_bytes());
                m.extend_from_slice(&u32::from(r.zone).to_be_bytes());
                self.sequence = self.sequence.wrapping_add(1);
            }
            let len = (m.len() - start) as u16;
            m[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::events::{conn_id, DestroyReason};
    use crate::conntrack::{ConnKey, CtState};

    fn snat_event(kind: EventKind) -> CtEvent {
        let mut orig = ConnKey {
            sport: 4000,
            dport: 53,
            proto: 17,
            zone: 2,
            family: 4,
            ..ConnKey::default()
        };
        orig.src[..4].copy_from_slice(&[10, 0, 0, 2]);
        orig.dst[..4].copy_from_slice(&[192, 0, 2, 2]);
        let mut reply = orig.reversed();
        reply.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
        reply.dport = 1024;
        CtEvent {
            kind,
            reason: DestroyReason::None,
            ts_us: 1_764_626_537_123_456,
            id: conn_id(1, 1),
            orig,
            reply,
            nat: CtState::SNAT,
            tattr: 6,
            tcp_state: 0,
            timeout_ms: 0,
        }
    }

    #[test]
    fn a_snat_create_is_one_rfc5424_line_with_inside_outside_and_destination() {
        let r = NatRecord::of(&snat_event(EventKind::New)).unwrap();
        assert_eq!(
            r.syslog_line("gw1"),
            "<134>1 2025-12-01T22:02:17.123456Z gw1 ctgate - NAT [nat@32473 event=\"create\" proto=\"udp\" zone=\"2\" inside=\"10.0.0.2:4000\" outside=\"192.0.2.1:1024\" dest=\"192.0.2.2:53\"] create udp 10.0.0.2:4000 -> 192.0.2.1:1024 dst 192.0.2.2:53 zone 2"
        );
        let mut plain = snat_event(EventKind::New);
        plain.nat = 0;
        assert_eq!(
            NatRecord::of(&plain),
            None,
            "only NATed connections are logged"
        );
        assert_eq!(NatRecord::of(&snat_event(EventKind::Update)), None);
        assert!(
            !NatRecord::of(&snat_event(EventKind::Destroy))
                .unwrap()
                .create
        );
    }

    #[test]
    fn rfc3339_dates_cross_leap_years_and_month_ends() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_us(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            rfc3339_us(1_735_689_599_999_999),
            "2024-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn an_ipfix_message_carries_templates_then_the_data_record_fields() {
        let r = NatRecord::of(&snat_event(EventKind::New)).unwrap();
        let mut enc = IpfixEncoder {
            sequence: 0,
            domain: 7,
        };
        let m = enc.message(1_764_626_537, true, &[r]);
        assert_eq!(u16::from_be_bytes([m[0], m[1]]), 10);
        assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
        assert_eq!(u32::from_be_bytes([m[12], m[13], m[14], m[15]]), 7);
        // Template set: id 2, two templates of 10 fields (4 + 2 * (4 + 40) bytes).
        assert_eq!(&m[16..20], &[0, 2, 0, 92]);
        assert_eq!(&m[20..24], &[1, 0, 0, 10]);
        assert_eq!(
            &m[24..28],
            &[0x01, 0x43, 0, 8],
            "observationTimeMilliseconds"
        );
        // The data set follows: id 256, 4 + 32 bytes.
        let d = &m[108..];
        assert_eq!(&d[..4], &[1, 0, 0, 36]);
        assert_eq!(
            u64::from_be_bytes(d[4..12].try_into().unwrap()),
            1_764_626_537_123
        );
        assert_eq!(d[12], 1, "natEvent create");
        assert_eq!(d[13], 17);
        assert_eq!(&d[14..18], &[10, 0, 0, 2]);
        assert_eq!(&d[18..22], &[192, 0, 2, 1]);
        assert_eq!(&d[22..26], &[0x0f, 0xa0, 0x04, 0x00], "4000 -> 1024");
        assert_eq!(&d[26..32], &[192, 0, 2, 2, 0, 53]);
        assert_eq!(&d[32..36], &[0, 0, 0, 2], "zone");
        assert_eq!(enc.sequence, 1);
        assert_eq!(m.len(), 108 + 36);
    }
}

/// Sends NAT records of the tracker's events to a syslog collector and/or an IPFIX
/// collector over UDP, from the control lcore: non-blocking sends, a record that cannot
/// be sent at once is dropped and counted in `lost`, never waited for.
pub struct NatLogger {
    sub: crate::conntrack::events::Subscription,
    socket: std::net::UdpSocket,
    syslog: Option<std::net::SocketAddr>,
    ipfix: Option<std::net::SocketAddr>,
    host: String,
    enc: IpfixEncoder,
    /// Export time (s) the templates were last sent, if ever.
    templates_at: Option<u64>,
    /// Seconds between template resends.
    pub template_interval: u64,
    /// Records sent (per destination).
    pub sent: u64,
    /// Records lost: queue overflow or a send that failed or would block.
    pub lost: u64,
    sub_lost: u64,
    buf: Vec<CtEvent>,
}

/// IPFIX data records per message (small enough for any MTU: 20 * 72 bytes at most).
const RECORDS_PER_MESSAGE: usize = 20;

impl NatLogger {
    /// A logger subscribed to `ct`'s events, sending to the given collectors.
    pub fn new(
        ct: &crate::conntrack::Conntrack,
        syslog: Option<std::net::SocketAddr>,
        ipfix: Option<std::net::SocketAddr>,
        host: &str,
    ) -> std::io::Result<NatLogger> {
        let any = match syslog.or(ipfix) {
            Some(std::net::SocketAddr::V6(_)) => "[::]:0",
            _ => "0.0.0.0:0",
        };
        let socket = std::net::UdpSocket::bind(any)?;
        socket.set_nonblocking(true)?;
        Ok(NatLogger {
            sub: ct
                .events()
                .subscribe(crate::conntrack::events::DEFAULT_QUEUE),
            socket,
            syslog,
            ipfix,
            host: host.to_string(),
            enc: IpfixEncoder::default(),
            templates_at: None,
            template_interval: 60,
            sent: 0,
            lost: 0,
            sub_lost: 0,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, to: std::net::SocketAddr, bytes: &[u8], records: u64) {
        match self.socket.send_to(bytes, to) {
            Ok(_) => self.sent += records,
            Err(_) => self.lost += records,
        }
    }

    /// Sends what arrived since the last call; `now_secs` is the wall clock in seconds.
    pub fn poll(&mut self, now_secs: u64) {
        self.buf.clear();
        self.sub.drain(&mut self.buf);
        let l = self.sub.lost();
        self.lost += l - self.sub_lost;
        self.sub_lost = l;
        let recs: Vec<NatRecord> = self.buf.iter().filter_map(NatRecord::of).collect();
        if let Some(to) = self.syslog {
            for r in &recs {
                let line = r.syslog_line(&self.host);
                self.send(to, line.as_bytes(), 1);
            }
        }
        if let Some(to) = self.ipfix {
            let due = self
                .templates_at
                .is_none_or(|t| now_secs >= t + self.template_interval);
            if due && recs.is_empty() {
                let m = self.enc.message(now_secs as u32, true, &[]);
                self.send(to, &m, 0);
                self.templates_at = Some(now_secs);
            }
            for chunk in recs.chunks(RECORDS_PER_MESSAGE) {
                let due = self
                    .templates_at
                    .is_none_or(|t| now_secs >= t + self.template_interval);
                let m = self.enc.message(now_secs as u32, due, chunk);
                if due {
                    self.templates_at = Some(now_secs);
                }
                self.send(to, &m, chunk.len() as u64);
            }
        }
    }
}

#[cfg(test)]
mod sender_tests {
    use super::*;
    use crate::conntrack::testpkt::udp;
    use crate::conntrack::tracker::ReplyTuples;
    use crate::conntrack::{ConnKey, Conntrack, CtConfig, CtState};
    use std::net::UdpSocket;
    use std::time::Duration;

    /// SNAT to 192.0.2.1, port 1024 + n.
    struct Snat;
    impl ReplyTuples for Snat {
        fn flags(&self, _: &ConnKey) -> u8 {
            CtState::SNAT
        }
        fn candidate(&self, orig: &ConnKey, n: u32) -> Option<ConnKey> {
            let mut r = orig.reversed();
            r.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
            r.dport = 1024 + n as u16;
            (n < 4).then_some(r)
        }
    }

    #[test]
    fn nat_bindings_reach_a_syslog_and_an_ipfix_listener_on_loopback() {
        let ct = Conntrack::new(CtConfig {
            max_conns: 100,
            hash_seed: Some(1),
            ..CtConfig::default()
        });
        let syslog = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ipfix = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&syslog, &ipfix] {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        let mut log = NatLogger::new(
            &ct,
            Some(syslog.local_addr().unwrap()),
            Some(ipfix.local_addr().unwrap()),
            "gw",
        )
        .unwrap();
        let mut w = ct.worker(0);
        w.process_nat(&udp("10.0.0.2", "192.0.2.2", 4000, 53), 0, true, &Snat, 0);
        w.process(&udp("10.0.0.3", "192.0.2.2", 4000, 53), 0, true, 0);
        drop(w);
        ct.control_handle().sweep_all(u64::MAX / 2);
        log.poll(1_764_626_537);
        let mut buf = [0u8; 2048];
        let mut lines = Vec::new();
        for _ in 0..2 {
            let n = syslog.recv(&mut buf).unwrap();
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert!(
            lines[0]
                .contains(" create udp 10.0.0.2:4000 -> 192.0.2.1:1024 dst 192.0.2.2:53 zone 0"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1]
                .contains(" delete udp 10.0.0.2:4000 -> 192.0.2.1:1024 dst 192.0.2.2:53 zone 0"),
            "{}",
            lines[1]
        );
        let n = ipfix.recv(&mut buf).unwrap();
        let m = &buf[..n];
        assert_eq!(u16::from_be_bytes([m[0], m[1]]), 10);
        assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, n);
        assert_eq!(&m[16..18], &[0, 2], "templates first");
        let d = &m[108..];
        assert_eq!(
            &d[..4],
            &[1, 0, 0, 4 + 2 * 32],
            "two records, the unNATed flow left out"
        );
        assert_eq!((d[12], d[44]), (1, 2), "natEvent create then delete");
        assert_eq!((log.sent, log.lost), (4, 0));
    }
}
