//! `[logging]`: where NAT binding records go (syslog and/or IPFIX), validated with the
//! file and line of a bad value like the rest of the file. All of it may change on a
//! reload: the control lcore points its NAT logger at the new targets.
//!
//! ```toml
//! [logging]
//! syslog = "/dev/log"          # a path: the local syslog socket; or "ADDRESS:PORT" (UDP)
//! ipfix = "192.0.2.9:4739"     # an IPFIX collector (UDP)
//! template_interval = 60       # seconds between IPFIX template resends
//! bindings_only = false        # true: only new NAT bindings, not every connection
//! ```

use super::{ConfigError, Lines};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use toml::Spanned;

/// Where syslog lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A local Unix datagram socket (`/dev/log`).
    Local(PathBuf),
    /// A collector over UDP.
    Udp(SocketAddr),
}

impl std::fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyslogTarget::Local(p) => write!(f, "{}", p.display()),
            SyslogTarget::Udp(a) => write!(f, "{a}"),
        }
    }
}

/// The validated `[logging]` section. Off (no target) by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logging {
    pub syslog: Option<SyslogTarget>,
    pub ipfix: Option<SocketAddr>,
    /// Seconds between IPFIX template resends (at least 1).
    pub template_interval: u32,
    /// Log a NAT binding (protocol, inside and outside address and port) when its first
    /// connection is made and when its last one goes, not each connection.
    pub bindings_only: bool,
}

/// The default template resend interval (seconds).
pub const DEFAULT_TEMPLATE_INTERVAL: u32 = 60;

impl Default for Logging {
    fn default() -> Self {
        Logging {
            syslog: None,
            ipfix: None,
            template_interval: DEFAULT_TEMPLATE_INTERVAL,
            bindings_only: false,
        }
    }
}

impl Logging {
    /// True when records go somewhere.
    pub fn enabled(&self) -> bool {
        self.syslog.is_some() || self.ipfix.is_some()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    syslog: Option<Spanned<String>>,
    ipfix: Option<Spanned<String>>,
    template_interval: Option<Spanned<u32>>,
    #[serde(default)]
    bindings_only: bool,
}

pub(super) fn validate_logging(raw: &RawLogging, lines: &Lines) -> Result<Logging, ConfigError> {
    let syslog = match &raw.syslog {
        None => None,
        Some(s) if s.get_ref().starts_with('/') => {
            Some(SyslogTarget::Local(PathBuf::from(s.get_ref())))
        }
        Some(s) => match s.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(SyslogTarget::Udp(a)),
            Err(_) => {
                return lines.err(
                    s.span(),
                    "logging.syslog".into(),
                    format!(
                        "invalid target '{}' (expected a socket path such as \"/dev/log\" or ADDRESS:PORT such as \"192.0.2.9:514\")",
                        s.get_ref()
                    ),
                )
            }
        },
    };
    let ipfix = match &raw.ipfix {
        None => None,
        Some(s) => match s.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                return lines.err(
                    s.span(),
                    "logging.ipfix".into(),
                    format!(
                        "invalid collector '{}' (expected ADDRESS:PORT, e.g. \"192.0.2.9:4739\")",
                        s.get_ref()
                    ),
                )
            }
        },
    };
    let template_interval = match &raw.template_interval {
        None => DEFAULT_TEMPLATE_INTERVAL,
        Some(t) if *t.get_ref() == 0 => {
            return lines.err(
                t.span(),
                "logging.template_interval".into(),
                "must be at least 1 second".into(),
            )
        }
        Some(t) => *t.get_ref(),
    };
    Ok(Logging {
        syslog,
        ipfix,
        template_interval,
        bindings_only: raw.bindings_only,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    use super::super::EMBEDDED_DEFAULT;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{EMBEDDED_DEFAULT}\n{extra}"), "t.toml")
    }

    /// The line number of line `n` of the text after the default and a blank line.
    fn line(n: usize) -> Option<usize> {
        Some(EMBEDDED_DEFAULT.lines().count() + 1 + n)
    }

    #[test]
    fn logging_targets_parse_to_a_socket_path_or_udp_addresses() {
        assert_eq!(parse("").unwrap().logging, Logging::default());
        let c = parse(
            "[logging]\nsyslog = \"/dev/log\"\nipfix = \"[::1]:4739\"\ntemplate_interval = 5\nbindings_only = true\n",
        )
        .unwrap();
        assert_eq!(
            c.logging,
            Logging {
                syslog: Some(SyslogTarget::Local("/dev/log".into())),
                ipfix: Some("[::1]:4739".parse().unwrap()),
                template_interval: 5,
                bindings_only: true,
            }
        );
        let u = parse("[logging]\nsyslog = \"127.0.0.1:514\"\n").unwrap();
        assert_eq!(
            u.logging.syslog,
            Some(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
    }

    #[test]
    fn bad_logging_values_name_the_file_line_and_field() {
        let e = parse("[logging]\nsyslog = \"localhost\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (line(2), Some("logging.syslog"))
        );
        assert!(
            e.to_string()
                .contains("logging.syslog: invalid target 'localhost'"),
            "{e}"
        );
        let e = parse("[logging]\nipfix = \"192.0.2.9\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (line(2), Some("logging.ipfix"))
        );
        let e =
            parse("[logging]\nipfix = \"192.0.2.9:4739\"\ntemplate_interval = 0\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (line(3), Some("logging.template_interval"))
        );
        let e = parse("[logging]\nsyslg = \"/dev/log\"\n").unwrap_err();
        assert_eq!(e.line, line(2), "an unknown key is an error: {e}");
    }
}
