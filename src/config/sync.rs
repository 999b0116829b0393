//! `[sync]`: state sync with other ctgate instances (docs/ha.md), validated with the file
//! and line of a bad value like the rest of the file.
//!
//! ```toml
//! [sync]
//! local = "10.9.0.1:3780"            # the UDP address this instance listens on
//! peers = ["10.9.0.2:3780"]          # the other instances (only these are accepted)
//! mode = "active-standby"            # or "active-active"
//! key_file = "/etc/ctgate/sync.key"  # optional HMAC-SHA256 key; mode 0600, ctgate's own
//! refresh_interval = 10              # seconds between full refreshes to each peer (0: off)
//! ```
//!
//! The key file is read when the file is validated, so a key that others can read, or
//! that is missing or short, is an error naming `sync.key_file` and its line.

use super::{ConfigError, Lines};
use serde::Deserialize;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The shortest key accepted (bytes).
pub const MIN_KEY_LEN: usize = 16;
/// The default refresh interval (seconds).
pub const DEFAULT_REFRESH_SECS: u32 = 10;

/// Who carries traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// One instance forwards; the other holds its connections until the traffic moves.
    ActiveStandby,
    /// All forward (ECMP); each with its own SNAT pool, each the standby of the others.
    ActiveActive,
}

impl SyncMode {
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::ActiveStandby => "active-standby",
            SyncMode::ActiveActive => "active-active",
        }
    }
}

/// The validated `[sync]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    pub local: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub mode: SyncMode,
    pub key_file: Option<PathBuf>,
    pub refresh_secs: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    local: Spanned<String>,
    peers: Spanned<Vec<Spanned<String>>>,
    mode: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    refresh_interval: Option<u32>,
}

/// Reads a sync key: the file's bytes less trailing white space. The file must belong to
/// the user ctgate runs as and have no group or other permission bits.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("sync key file {shown}: {e}"))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "sync key file {shown} has mode {mode:04o}: it must be readable only by \
             ctgate's user (chmod 600 {shown})"
        ));
    }
    // The owner of /proc/self is the process's effective user.
    if let Ok(me) = std::fs::metadata("/proc/self") {
        if me.uid() != meta.uid() {
            return Err(format!(
                "sync key file {shown} belongs to uid {}, not to ctgate's user (uid {})",
                meta.uid(),
                me.uid()
            ));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| format!("sync key file {shown}: {e}"))?;
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    if end < MIN_KEY_LEN {
        return Err(format!(
            "sync key file {shown}: the key is {end} bytes; at least {MIN_KEY_LEN} are required"
        ));
    }
    Ok(bytes[..end].to_vec())
}

fn addr(s: &Spanned<String>, field: &str, lines: &Lines) -> Result<SocketAddr, ConfigError> {
    s.get_ref().parse::<SocketAddr>().or_else(|_| {
        lines.err(
            s.span(),
            field.into(),
            format!(
                "invalid address '{}' (expected ADDRESS:PORT, e.g. \"10.9.0.1:3780\")",
                s.get_ref()
            ),
        )
    })
}

pub(super) fn validate_sync(
    raw: &Option<RawSync>,
    lines: &Lines,
) -> Result<Option<SyncConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let local = addr(&raw.local, "sync.local", lines)?;
    if local.ip().is_unspecified() || local.port() == 0 {
        return lines.err(
            raw.local.span(),
            "sync.local".into(),
            format!("'{local}': give the address and port peers send to"),
        );
    }
    let mut peers = Vec::new();
    for (i, p) in raw.peers.get_ref().iter().enumerate() {
        let a = addr(p, &format!("sync.peers[{i}]"), lines)?;
        if a == local || peers.contains(&a) || a.port() == 0 || a.ip().is_unspecified() {
            return lines.err(
                p.span(),
                format!("sync.peers[{i}]"),
                format!("'{a}' is this instance, a repeated peer or not a peer's address"),
            );
        }
        peers.push(a);
    }
    if peers.is_empty() || peers.len() > 254 {
        return lines.err(
            raw.peers.span(),
            "sync.peers".into(),
            "give 1 to 254 peers".into(),
        );
    }
    let mode = match raw.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "active-standby")) => SyncMode::ActiveStandby,
        Some((_, "active-active")) => SyncMode::ActiveActive,
        Some((m, other)) => {
            return lines.err(
                m.span(),
                "sync.mode".into(),
                format!(
                    "unknown mode '{other}' (expected \"active-standby\" or \"active-active\")"
                ),
            )
        }
    };
    let key_file = match &raw.key_file {
        None => None,
        Some(k) => {
            let p = PathBuf::from(k.get_ref());
            if let Err(e) = read_key_file(&p) {
                return lines.err(k.span(), "sync.key_file".into(), e);
            }
            Some(p)
        }
    };
    Ok(Some(SyncConfig {
        local,
        peers,
        mode,
        key_file,
        refresh_secs: raw.refresh_interval.unwrap_or(DEFAULT_REFRESH_SECS),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{Config, EMBEDDED_DEFAULT};
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{EMBEDDED_DEFAULT}\n{extra}"), "t.toml")
    }

    fn line(n: usize) -> Option<usize> {
        Some(EMBEDDED_DEFAULT.lines().count() + 1 + n)
    }

    #[test]
    fn sync_section_parses_peers_mode_and_refresh() {
        assert_eq!(parse("").unwrap().sync, None);
        let c = parse(
            "[sync]\nlocal = \"127.0.0.1:3780\"\npeers = [\"127.0.0.2:3780\", \"[::1]:3781\"]\nmode = \"active-active\"\nrefresh_interval = 5\n",
        )
        .unwrap();
        assert_eq!(
            c.sync,
            Some(SyncConfig {
                local: "127.0.0.1:3780".parse().unwrap(),
                peers: vec![
                    "127.0.0.2:3780".parse().unwrap(),
                    "[::1]:3781".parse().unwrap()
                ],
                mode: SyncMode::ActiveActive,
                key_file: None,
                refresh_secs: 5,
            })
        );
    }

    #[test]
    fn bad_sync_values_name_the_file_line_and_field() {
        let e = parse("[sync]\nlocal = \"127.0.0.1\"\npeers = [\"127.0.0.2:1\"]\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (line(2), Some("sync.local")));
        let e = parse(
            "[sync]\nlocal = \"127.0.0.1:1\"\npeers = [\n\"127.0.0.2:1\",\n\"127.0.0.1:1\"]\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (line(5), Some("sync.peers[1]"))
        );
        let e = parse("[sync]\nlocal = \"127.0.0.1:1\"\npeers = []\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("sync.peers"));
        let e =
            parse("[sync]\nlocal = \"127.0.0.1:1\"\npeers = [\"127.0.0.2:1\"]\nmode = \"hot\"\n")
                .unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (line(4), Some("sync.mode")));
        let e = parse("[sync]\nlocal = \"127.0.0.1:1\"\npeer = [\"127.0.0.2:1\"]\n").unwrap_err();
        assert!(e.to_string().contains("peer"), "{e}");
    }

    #[test]
    fn group_readable_key_file_is_a_config_error_with_its_line() {
        let dir = crate::test_dir::TestDir::new("cfgkey");
        let p = dir.file("sync.key", "0123456789abcdef0123\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[sync]\nlocal = \"127.0.0.1:1\"\npeers = [\"127.0.0.2:1\"]\nkey_file = \"{}\"\n",
            p.display()
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (line(4), Some("sync.key_file"))
        );
        assert!(e.to_string().contains("mode 0644"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            parse(&text).unwrap().sync.unwrap().key_file,
            Some(p.clone())
        );
        assert_eq!(read_key_file(&p).unwrap(), b"0123456789abcdef0123");
    }
}
