//! NAT binding records for the logs operators keep (who used which outside address and
//! port, when): an RFC 5424 syslog line and RFC 7011 IPFIX messages with the NAT
//! information elements of RFC 8158 / IANA, built from the tracker's connection events.
//!
//! Only connections with NAT are logged: `[NEW]` gives a create record (natEvent 1),
//! `[DESTROY]` a delete record (natEvent 2). The inside address/port is the original
//! source, the outside one the reply tuple's destination (the translated source), the
//! destination the original destination; ICMP carries its identifier as the inside and
//! outside port and, in IPFIX, type * 256 + code as the destination port (NetFlow's
//! convention); its syslog destination has no port.
//! Pure formatting: no I/O here.

use crate::config::{Config, Logging, SyslogTarget};
use crate::conntrack::event_format::linux_proto_name;
use crate::conntrack::events::{CtEvent, EventKind, Subscription, DEFAULT_QUEUE};
use crate::conntrack::Conntrack;
use crate::control::event_consumers::EventConsumer;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;

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
            // ICMP: type * 256 + code, NetFlow's convention (nfdump shows `8.0`).
            dest: (e.orig.dst_ip(), e.orig.dport),
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
        let (i, o) = (a(&self.inside), a(&self.outside));
        // An ICMP destination has no port (the identifier is the inside/outside "port").
        let d = if crate::conntrack::key::is_icmp(self.proto) {
            match self.dest.0 {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            }
        } else {
            a(&self.dest)
        };
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
            assured: false,
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

    #[test]
    fn an_ipv6_record_goes_in_the_ipv6_template_with_post_nat_ipv6_address() {
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let r = NatRecord {
            create: false,
            ts_us: 1_000_000,
            proto: 17,
            zone: 0,
            inside: (v6("fd00:0:0:1::2"), 4000),
            outside: (v6("fd00:0:0:2::1"), 5000),
            dest: (v6("fd00:0:0:2::2"), 53),
        };
        let mut enc = IpfixEncoder::default();
        let m = enc.message(1, false, &[r]);
        // Header, then the data set of template 257: 8 + 1 + 1 + 16 + 16 + 2 + 2 + 16 + 2 + 4.
        let d = &m[16..];
        assert_eq!(&d[..4], &[1, 1, 0, 4 + 68]);
        assert_eq!(u64::from_be_bytes(d[4..12].try_into().unwrap()), 1000);
        assert_eq!((d[12], d[13]), (2, 17), "natEvent delete, UDP");
        let ip = |b: &[u8]| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap());
        assert_eq!(
            ip(&d[14..30]),
            "fd00:0:0:1::2".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(
            ip(&d[30..46]),
            "fd00:0:0:2::1".parse::<std::net::Ipv6Addr>().unwrap(),
            "postNATSourceIPv6Address"
        );
        assert_eq!(&d[46..50], &[0x0f, 0xa0, 0x13, 0x88], "4000 -> 5000");
        assert_eq!(
            ip(&d[50..66]),
            "fd00:0:0:2::2".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(&d[66..72], &[0, 53, 0, 0, 0, 0]);
        assert_eq!(m.len(), 16 + 72);
        // The template itself names IE 281 for the outside address.
        let t = enc.message(1, true, &[]);
        let v6t = &t[20 + 4 + 40..];
        assert_eq!(&v6t[..4], &[1, 1, 0, 10]);
        assert_eq!(
            &v6t[4 + 4 * 4..4 + 4 * 4 + 4],
            &[0x01, 0x19, 0, 16],
            "281, 16 bytes"
        );
    }
}

/// Sends NAT records of the tracker's events to the `[logging]` targets (a syslog socket
/// or collector, an IPFIX collector), from the control lcore: non-blocking sends, at most
/// [`RECORDS_PER_POLL`] records per poll, a bounded queue; a record that cannot be sent
/// at once is dropped and counted in `lost`, never waited for. Without a target it does
/// not listen (the datapath then emits nothing for it).
pub struct NatLogger {
    settings: Logging,
    sub: Option<Subscription>,
    udp4: Option<UdpSocket>,
    udp6: Option<UdpSocket>,
    unix: Option<UnixDatagram>,
    host: String,
    enc: IpfixEncoder,
    /// Export time (s) the templates were last sent, if ever.
    templates_at: Option<u64>,
    /// Records sent (a record sent to both syslog and IPFIX counts twice).
    pub sent: u64,
    /// Records lost: queue overflow, or a send that failed or would block.
    pub lost: u64,
    sub_lost: u64,
    /// Events drained and not yet handled (`buf[next..]`).
    buf: Vec<CtEvent>,
    next: usize,
    /// `bindings_only`: connections per live binding.
    bindings: HashMap<BindingKey, u32>,
}

/// A NAT binding: protocol, zone, inside and outside address and port.
type BindingKey = (u8, u16, (IpAddr, u16), (IpAddr, u16));

/// IPFIX data records per message (small enough for any MTU: 20 * 72 bytes at most).
const RECORDS_PER_MESSAGE: usize = 20;
/// Events handled per poll (the rest wait for the next tick in the bounded queue).
pub const RECORDS_PER_POLL: usize = 2048;
/// Bindings tracked in `bindings_only` mode; beyond, a binding is logged per connection.
const MAX_BINDINGS: usize = 1 << 20;

/// This host's name for the syslog lines (`-` when unknown).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

fn udp_socket(any: &str) -> Option<UdpSocket> {
    let s = UdpSocket::bind(any).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

impl NatLogger {
    /// A logger for `logging`, listening to `ct`'s events when it has a target.
    pub fn new(ct: &Conntrack, logging: &Logging) -> NatLogger {
        let mut l = NatLogger {
            settings: Logging::default(),
            sub: None,
            udp4: None,
            udp6: None,
            unix: None,
            host: hostname(),
            enc: IpfixEncoder::default(),
            templates_at: None,
            sent: 0,
            lost: 0,
            sub_lost: 0,
            buf: Vec::new(),
            next: 0,
            bindings: HashMap::new(),
        };
        l.configure(ct, logging);
        l
    }

    /// Points the logger at `logging`'s targets (keeping its counters); true when
    /// something changed.
    pub fn configure(&mut self, ct: &Conntrack, logging: &Logging) -> bool {
        if *logging == self.settings {
            return false;
        }
        self.settings = logging.clone();
        let targets: Vec<SocketAddr> = logging
            .ipfix
            .into_iter()
            .chain(match &logging.syslog {
                Some(SyslogTarget::Udp(a)) => Some(*a),
                _ => None,
            })
            .collect();
        self.udp4 = targets
            .iter()
            .any(SocketAddr::is_ipv4)
            .then(|| udp_socket("0.0.0.0:0"))
            .flatten();
        self.udp6 = targets
            .iter()
            .any(SocketAddr::is_ipv6)
            .then(|| udp_socket("[::]:0"))
            .flatten();
        self.unix = match logging.syslog {
            Some(SyslogTarget::Local(_)) => UnixDatagram::unbound()
                .ok()
                .filter(|u| u.set_nonblocking(true).is_ok()),
            _ => None,
        };
        // A new collector gets the templates at once.
        self.templates_at = None;
        if !logging.bindings_only {
            self.bindings = HashMap::new();
        }
        if logging.enabled() {
            if self.sub.is_none() {
                self.sub = Some(ct.events().subscribe(DEFAULT_QUEUE));
                self.sub_lost = 0;
            }
        } else {
            self.sub = None;
            self.buf.clear();
            self.next = 0;
            self.bindings = HashMap::new();
        }
        true
    }

    /// The settings in force.
    pub fn settings(&self) -> &Logging {
        &self.settings
    }

    fn send(&mut self, to: &Target, bytes: &[u8], records: u64) {
        let r = match to {
            Target::Udp(a) => match if a.is_ipv4() { &self.udp4 } else { &self.udp6 } {
                Some(s) => s.send_to(bytes, a),
                None => Err(std::io::ErrorKind::NotConnected.into()),
            },
            Target::Local(p) => match &self.unix {
                Some(u) => u.send_to(bytes, p),
                None => Err(std::io::ErrorKind::NotConnected.into()),
            },
        };
        match r {
            Ok(_) => self.sent += records,
            Err(_) => self.lost += records,
        }
    }

    /// The record of `e` to log, if any (`bindings_only`: a binding's first create and
    /// its last delete).
    fn record(&mut self, e: &CtEvent) -> Option<NatRecord> {
        let r = NatRecord::of(e)?;
        if !self.settings.bindings_only {
            return Some(r);
        }
        let key = (r.proto, r.zone, r.inside, r.outside);
        if r.create {
            if let Some(n) = self.bindings.get_mut(&key) {
                *n += 1;
                return None;
            }
            if self.bindings.len() < MAX_BINDINGS {
                self.bindings.insert(key, 1);
            }
            Some(r)
        } else {
            match self.bindings.get_mut(&key) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    None
                }
                Some(_) => {
                    self.bindings.remove(&key);
                    Some(r)
                }
                // Made before logging started (or its create was lost): not ours.
                None => None,
            }
        }
    }

    /// Sends up to [`RECORDS_PER_POLL`] events' records; `now_secs` is the wall clock.
    pub fn poll_at(&mut self, now_secs: u64) {
        let Some(sub) = &self.sub else { return };
        if self.next >= self.buf.len() {
            self.buf.clear();
            self.next = 0;
            sub.drain(&mut self.buf);
        }
        let l = sub.lost();
        self.lost += l.saturating_sub(self.sub_lost);
        self.sub_lost = l;
        let end = (self.next + RECORDS_PER_POLL).min(self.buf.len());
        let events: Vec<CtEvent> = self.buf[self.next..end].to_vec();
        self.next = end;
        let recs: Vec<NatRecord> = events.iter().filter_map(|e| self.record(e)).collect();
        if let Some(t) = &self.settings.syslog {
            let to = Target::of(t);
            for r in &recs {
                let line = r.syslog_line(&self.host);
                self.send(&to, line.as_bytes(), 1);
            }
        }
        if let Some(a) = self.settings.ipfix {
            let to = Target::Udp(a);
            let interval = u64::from(self.settings.template_interval);
            let due = |at: Option<u64>| at.is_none_or(|t| now_secs >= t + interval);
            if due(self.templates_at) && recs.is_empty() {
                let m = self.enc.message(now_secs as u32, true, &[]);
                self.send(&to, &m, 0);
                self.templates_at = Some(now_secs);
            }
            for chunk in recs.chunks(RECORDS_PER_MESSAGE) {
                let with_templates = due(self.templates_at);
                let m = self.enc.message(now_secs as u32, with_templates, chunk);
                if with_templates {
                    self.templates_at = Some(now_secs);
                }
                self.send(&to, &m, chunk.len() as u64);
            }
        }
    }
}

/// Where one send goes.
enum Target {
    Udp(SocketAddr),
    Local(std::path::PathBuf),
}

impl Target {
    fn of(t: &SyslogTarget) -> Target {
        match t {
            SyslogTarget::Udp(a) => Target::Udp(*a),
            SyslogTarget::Local(p) => Target::Local(p.clone()),
        }
    }
}

impl EventConsumer for NatLogger {
    fn name(&self) -> &'static str {
        "natlog"
    }

    fn poll(&mut self, now_us: u64) {
        self.poll_at(now_us / 1_000_000);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("sent", self.sent), ("lost", self.lost)]
    }

    fn reconfigure(&mut self, ct: &Conntrack, cfg: &Config) -> Option<String> {
        self.configure(ct, &cfg.logging).then(|| {
            let l = &self.settings;
            let syslog = l
                .syslog
                .as_ref()
                .map_or("off".to_string(), |t| t.to_string());
            let ipfix = l.ipfix.map_or("off".to_string(), |a| a.to_string());
            format!(
                "natlog: syslog {syslog}, ipfix {ipfix}, template_interval {}s{}",
                l.template_interval,
                if l.bindings_only {
                    ", bindings only"
                } else {
                    ""
                }
            )
        })
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
            &Logging {
                syslog: Some(SyslogTarget::Udp(syslog.local_addr().unwrap())),
                ipfix: Some(ipfix.local_addr().unwrap()),
                ..Logging::default()
            },
        );
        let mut w = ct.worker(0);
        w.process_nat(&udp("10.0.0.2", "192.0.2.2", 4000, 53), 0, true, &Snat, 0);
        w.process(&udp("10.0.0.3", "192.0.2.2", 4000, 53), 0, true, 0);
        drop(w);
        ct.control_handle().sweep_all(u64::MAX / 2);
        log.poll_at(1_764_626_537);
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

    fn tracker() -> Conntrack {
        Conntrack::new(CtConfig {
            max_conns: 100,
            hash_seed: Some(1),
            ..CtConfig::default()
        })
    }

    /// SNAT every connection to 192.0.2.1:1024 (one binding for all of them).
    struct OneBinding;
    impl ReplyTuples for OneBinding {
        fn flags(&self, _: &ConnKey) -> u8 {
            CtState::SNAT
        }
        fn candidate(&self, orig: &ConnKey, n: u32) -> Option<ConnKey> {
            let mut r = orig.reversed();
            r.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
            r.dport = 1024;
            (n == 0).then_some(r)
        }
    }

    #[test]
    fn bindings_only_logs_a_bindings_first_create_and_its_last_delete() {
        let ct = tracker();
        let rx = std::os::unix::net::UnixDatagram::bind(
            std::env::temp_dir().join(format!("ctgate-natlog-{}.sock", std::process::id())),
        )
        .unwrap();
        let path = rx
            .local_addr()
            .unwrap()
            .as_pathname()
            .unwrap()
            .to_path_buf();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut log = NatLogger::new(
            &ct,
            &Logging {
                syslog: Some(SyslogTarget::Local(path.clone())),
                bindings_only: true,
                ..Logging::default()
            },
        );
        let mut w = ct.worker(0);
        // One inside socket to three destinations: three connections, one binding.
        for d in ["192.0.2.2", "192.0.2.3", "192.0.2.4"] {
            w.process_nat(&udp("10.0.0.2", d, 4000, 53), 0, true, &OneBinding, 0);
        }
        drop(w);
        ct.control_handle().sweep_all(u64::MAX / 2);
        log.poll_at(1);
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        rx.set_nonblocking(true).unwrap();
        while let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].contains("] create udp 10.0.0.2:4000 -> 192.0.2.1:1024 dst 192.0.2.2:53"),
            "{}",
            got[0]
        );
        assert!(
            got[1].contains("] delete udp 10.0.0.2:4000 -> 192.0.2.1:1024 dst"),
            "{}",
            got[1]
        );
        assert_eq!((log.sent, log.lost), (2, 0));
    }

    #[test]
    fn a_target_that_refuses_counts_lost_records_and_a_reload_retargets() {
        let ct = tracker();
        let gone = std::env::temp_dir().join("ctgate-natlog-no-such.sock");
        let mut log = NatLogger::new(
            &ct,
            &Logging {
                syslog: Some(SyslogTarget::Local(gone)),
                ..Logging::default()
            },
        );
        assert_eq!(ct.events().listeners(), 1);
        let mut w = ct.worker(0);
        w.process_nat(&udp("10.0.0.2", "192.0.2.2", 4000, 53), 0, true, &Snat, 0);
        drop(w);
        log.poll_at(1);
        assert_eq!(
            (log.sent, log.lost),
            (0, 1),
            "no socket there: lost, counted"
        );
        // The configuration drops the target: the logger stops listening.
        let mut cfg = Config::embedded().unwrap();
        cfg.logging = Logging::default();
        assert!(log.reconfigure(&ct, &cfg).is_some());
        assert_eq!(ct.events().listeners(), 0);
        assert!(!ct.events().enabled());
        assert_eq!(log.counters(), vec![("sent", 0), ("lost", 1)]);
        assert!(log.reconfigure(&ct, &cfg).is_none(), "nothing changed");
    }
}
