//! `ipf-get-status` output, byte for byte as `ovs-appctl dpctl/ipf-get-status` prints it
//! (OVS `lib/dpctl.c` `dpctl_ct_ipf_get_status`, `lib/ipf.c` `ipf_dump_create`).

use super::{IpfStatus, ListInfo};
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The "Fragmentation Module Status" block; with `lists` (`-m`), the "Fragment Lists"
/// that follow it.
pub fn status(s: &IpfStatus, lists: Option<&[ListInfo]>) -> String {
    let mut o = String::new();
    let i = "        ";
    let _ = writeln!(o, "{i}Fragmentation Module Status");
    let _ = writeln!(o, "{i}---------------------------");
    let _ = writeln!(o, "{i}v4 enabled: {}", u8::from(s.settings.enabled_v4));
    let _ = writeln!(o, "{i}v6 enabled: {}", u8::from(s.settings.enabled_v6));
    let _ = writeln!(o, "{i}max num frags (v4/v6): {}", s.settings.max_frags);
    let _ = writeln!(o, "{i}num frag: {}", s.n_frags);
    for (name, min, c) in [
        ("v4", s.settings.min_frag_v4, &s.v4),
        ("v6", s.settings.min_frag_v6, &s.v6),
    ] {
        let _ = writeln!(o, "{i}min {name} frag size: {min}");
        let _ = writeln!(o, "{i}{name} frags accepted: {}", c.accepted);
        let _ = writeln!(o, "{i}{name} frags completed: {}", c.completed);
        let _ = writeln!(o, "{i}{name} frags expired: {}", c.expired);
        let _ = writeln!(o, "{i}{name} frags too small: {}", c.too_small);
        let _ = writeln!(o, "{i}{name} frags overlapped: {}", c.overlapped);
        let _ = writeln!(o, "{i}{name} frags purged: {}", c.purged);
    }
    if let Some(lists) = lists {
        let _ = write!(o, "\n{i}Fragment Lists:\n\n");
        for l in lists {
            let _ = writeln!(o, "{}", list(l));
        }
    }
    o
}

/// One list, as OVS's `ipf_dump_create` (recirculation id always 0 here).
pub fn list(l: &ListInfo) -> String {
    let k = &l.key;
    let (src, dst, dl_type) = if k.family == 6 {
        (
            Ipv6Addr::from(k.src).to_string(),
            Ipv6Addr::from(k.dst).to_string(),
            0x86dd,
        )
    } else {
        let v4 = |a: &[u8; 16]| Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string();
        (v4(&k.src), v4(&k.dst), 0x800)
    };
    let state = match (l.first_seen, l.last_seen) {
        (true, true) => "first/last frag",
        (true, false) => "first frag",
        (false, true) => "last frag",
        (false, false) => "other frag",
    };
    format!(
        "(src={src},dst={dst},recirc_id=0,ip_id={},dl_type={dl_type:#x},zone={},nw_proto={},num_fragments={},state={state})",
        k.ident, k.zone, k.proto, l.n_fragments
    )
}
