//! The control protocol: newline-delimited JSON over a Unix stream socket, documented for
//! operators and tool writers in `docs/control-protocol.md`.
//!
//! A client sends one request per line:
//!
//! ```text
//! {"id":1,"cmd":"dump-conntrack","args":["zone=1","--stats"]}
//! ```
//!
//! and gets, for each request in order, either one final reply
//!
//! ```text
//! {"id":1,"ok":true,"output":"…"}
//! {"id":1,"ok":false,"error":"…"}
//! ```
//!
//! or, for large outputs, any number of `{"id":1,"more":true,"output":"chunk"}` lines
//! followed by a final reply; the output is the concatenation of every chunk and the
//! final reply's `output`.
//!
//! This module has the request parser (used by the server, fuzzed), the reply encoders,
//! the reply parser and a small blocking client (used by `ctgate-ctl` and the tests).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Where ctgate listens by default.
pub const DEFAULT_SOCKET: &str = "/run/ctgate/ctgate.sock";

/// Longest request line accepted, in bytes (without the newline).
pub const MAX_REQUEST: usize = 64 * 1024;

/// A parsed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Echoed in every reply line (a number, a string or null).
    pub id: Value,
    /// Command name (`dump-conntrack`, `ct-get-nconns`, …).
    pub cmd: String,
    /// OVS-style arguments, parsed by the command on the server.
    pub args: Vec<String>,
}

/// A request that cannot be served, and the id to answer it with (null when the id could
/// not be read).
#[derive(Clone, Debug, PartialEq)]
pub struct BadRequest {
    pub id: Value,
    pub error: String,
}

/// Parses one request line (without its newline). Never panics.
pub fn parse_request(line: &[u8]) -> Result<Request, BadRequest> {
    let bad = |id: &Value, error: String| BadRequest {
        id: id.clone(),
        error,
    };
    if line.len() > MAX_REQUEST {
        return Err(bad(
            &Value::Null,
            format!("request too large (more than {MAX_REQUEST} bytes)"),
        ));
    }
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        bad(
            &Value::Null,
            format!("malformed request: not a JSON object ({e})"),
        )
    })?;
    let Value::Object(mut obj) = v else {
        return Err(bad(
            &Value::Null,
            "malformed request: not a JSON object".into(),
        ));
    };
    let id = match obj.remove("id") {
        None => Value::Null,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => id,
        Some(_) => {
            return Err(bad(
                &Value::Null,
                "malformed request: 'id' must be a number, a string or null".into(),
            ))
        }
    };
    let cmd = match obj.remove("cmd") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) => return Err(bad(&id, "malformed request: empty 'cmd'".into())),
        Some(_) => return Err(bad(&id, "malformed request: 'cmd' must be a string".into())),
        None => return Err(bad(&id, "malformed request: missing 'cmd'".into())),
    };
    let args = match obj.remove("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut args = Vec::with_capacity(a.len());
            for (i, x) in a.into_iter().enumerate() {
                match x {
                    Value::String(s) => args.push(s),
                    _ => {
                        return Err(bad(
                            &id,
                            format!("malformed request: args[{i}] is not a string"),
                        ))
                    }
                }
            }
            args
        }
        Some(_) => {
            return Err(bad(
                &id,
                "malformed request: 'args' must be an array of strings".into(),
            ))
        }
    };
    Ok(Request { id, cmd, args })
}

/// Encodes a request line (with its newline).
pub fn encode_request(id: &Value, cmd: &str, args: &[String]) -> String {
    #[derive(Serialize)]
    struct R<'a> {
        id: &'a Value,
        cmd: &'a str,
        args: &'a [String],
    }
    line(&R { id, cmd, args })
}

#[derive(Serialize)]
struct OkLine<'a> {
    id: &'a Value,
    ok: bool,
    output: &'a str,
}

#[derive(Serialize)]
struct MoreLine<'a> {
    id: &'a Value,
    more: bool,
    output: &'a str,
}

#[derive(Serialize)]
struct ErrLine<'a> {
    id: &'a Value,
    ok: bool,
    error: &'a str,
}

fn line<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs of strings and JSON values cannot fail.
    let mut s = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// The final reply of a successful request.
pub fn encode_ok(id: &Value, output: &str) -> String {
    line(&OkLine {
        id,
        ok: true,
        output,
    })
}

/// One chunk of a streamed output (more lines follow).
pub fn encode_more(id: &Value, output: &str) -> String {
    line(&MoreLine {
        id,
        more: true,
        output,
    })
}

/// The final reply of a failed request.
pub fn encode_error(id: &Value, error: &str) -> String {
    line(&ErrLine {
        id,
        ok: false,
        error,
    })
}

/// One reply line, as a client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A chunk of output; more lines follow.
    More(String),
    /// The last piece of output of a successful request.
    Ok(String),
    /// The request failed.
    Error(String),
}

/// Parses one reply line into its id and content.
pub fn parse_reply(line: &[u8]) -> Result<(Value, Reply), String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        id: Value,
        #[serde(default)]
        ok: Option<bool>,
        #[serde(default)]
        more: bool,
        #[serde(default)]
        output: Option<String>,
        #[serde(default)]
        error: Option<String>,
    }
    let r: Raw = serde_json::from_slice(line).map_err(|e| format!("malformed reply: {e}"))?;
    let reply = if r.more {
        Reply::More(r.output.unwrap_or_default())
    } else {
        match r.ok {
            Some(true) => Reply::Ok(r.output.unwrap_or_default()),
            Some(false) => Reply::Error(r.error.unwrap_or_else(|| "unknown error".into())),
            None => return Err("malformed reply: neither 'ok' nor 'more'".into()),
        }
    };
    Ok((r.id, reply))
}

/// Why a [`call`] did not get a reply.
#[derive(Debug)]
pub enum CallError {
    /// Could not connect to the socket.
    Connect(io::Error),
    /// The connection failed or closed before the final reply.
    Io(io::Error),
    /// The server sent something that is not a reply line.
    Protocol(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "cannot connect: {e}"),
            CallError::Io(e) => write!(f, "connection failed: {e}"),
            CallError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

/// Sends one request over a new connection to `path` and hands every piece of output to
/// `out` as it arrives. Returns the server's verdict: `Ok(Ok(()))` on success,
/// `Ok(Err(message))` when the server answered with an error. `timeout` bounds each wait
/// for data (not the whole call, so long streams are fine).
pub fn call(
    path: &Path,
    cmd: &str,
    args: &[String],
    timeout: Option<Duration>,
    mut out: impl FnMut(&str),
) -> Result<Result<(), String>, CallError> {
    let mut stream = UnixStream::connect(path).map_err(CallError::Connect)?;
    stream.set_read_timeout(timeout).map_err(CallError::Io)?;
    stream.set_write_timeout(timeout).map_err(CallError::Io)?;
    let id = Value::from(1);
    // A refused peer may be answered and closed before it writes: a failed write is
    // not fatal if the reply is there to read.
    let write_err = stream
        .write_all(encode_request(&id, cmd, args).as_bytes())
        .err();
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match reader.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => return Err(CallError::Io(write_err.unwrap_or(e))),
        };
        if n == 0 {
            return Err(CallError::Io(write_err.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before replying",
                )
            })));
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match parse_reply(text).map_err(CallError::Protocol)?.1 {
            Reply::More(s) => out(&s),
            Reply::Ok(s) => {
                out(&s);
                return Ok(Ok(()));
            }
            Reply::Error(e) => return Ok(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_request() {
        let r = parse_request(br#"{"id":1,"cmd":"dump-conntrack","args":["zone=1","--stats"]}"#)
            .unwrap();
        assert_eq!(r.id, Value::from(1));
        assert_eq!(r.cmd, "dump-conntrack");
        assert_eq!(r.args, vec!["zone=1".to_string(), "--stats".to_string()]);
        let r = parse_request(br#"{"cmd":"version"}"#).unwrap();
        assert_eq!(r.id, Value::Null);
        assert!(r.args.is_empty());
        let r = parse_request(br#"{"id":"a","cmd":"version","extra":[1]}"#).unwrap();
        assert_eq!(r.id, Value::from("a"));
    }

    #[test]
    fn rejects_malformed_requests_with_the_id_when_known() {
        let e = parse_request(b"garbage").unwrap_err();
        assert_eq!(e.id, Value::Null);
        assert!(e.error.starts_with("malformed request"), "{}", e.error);
        let e = parse_request(b"[1,2]").unwrap_err();
        assert_eq!(e.error, "malformed request: not a JSON object");
        let e = parse_request(br#"{"id":7}"#).unwrap_err();
        assert_eq!(e.id, Value::from(7));
        assert_eq!(e.error, "malformed request: missing 'cmd'");
        let e = parse_request(br#"{"id":7,"cmd":3}"#).unwrap_err();
        assert_eq!(e.error, "malformed request: 'cmd' must be a string");
        let e = parse_request(br#"{"id":7,"cmd":"x","args":[1]}"#).unwrap_err();
        assert_eq!(e.error, "malformed request: args[0] is not a string");
        let e = parse_request(br#"{"id":7,"cmd":"x","args":"a"}"#).unwrap_err();
        assert_eq!(
            e.error,
            "malformed request: 'args' must be an array of strings"
        );
        let e = parse_request(br#"{"id":{},"cmd":"x"}"#).unwrap_err();
        assert_eq!(e.id, Value::Null);
        let big = vec![b' '; MAX_REQUEST + 1];
        assert!(parse_request(&big)
            .unwrap_err()
            .error
            .starts_with("request too large"));
    }

    #[test]
    fn replies_round_trip() {
        let id = Value::from(3);
        let out = "tcp,orig=(src=1.2.3.4)\n\"quoted\"\t\u{e9}\n";
        let l = encode_ok(&id, out);
        assert_eq!(l.matches('\n').count(), 1, "one line: {l}");
        assert_eq!(
            parse_reply(l.trim_end().as_bytes()).unwrap(),
            (id.clone(), Reply::Ok(out.into()))
        );
        let l = encode_more(&id, "x");
        assert_eq!(l, "{\"id\":3,\"more\":true,\"output\":\"x\"}\n");
        assert_eq!(
            parse_reply(l.trim_end().as_bytes()).unwrap().1,
            Reply::More("x".into())
        );
        let l = encode_error(&Value::Null, "bad");
        assert_eq!(l, "{\"id\":null,\"ok\":false,\"error\":\"bad\"}\n");
        assert_eq!(
            parse_reply(l.trim_end().as_bytes()).unwrap().1,
            Reply::Error("bad".into())
        );
        assert_eq!(
            encode_ok(&id, "1\n"),
            "{\"id\":3,\"ok\":true,\"output\":\"1\\n\"}\n"
        );
        let req = encode_request(&id, "ct-get-limits", &["zone=1,2".into()]);
        assert_eq!(
            parse_request(req.trim_end().as_bytes()).unwrap(),
            Request {
                id,
                cmd: "ct-get-limits".into(),
                args: vec!["zone=1,2".into()]
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn request_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(&bytes);
            let _ = parse_reply(&bytes);
        }

        #[test]
        fn request_parser_never_panics_on_json_like_input(
            s in r#"\{("(id|cmd|args)":(null|[0-9]{1,3}|"[a-z-]{0,12}"|\[("[a-z=0-9,]{0,8}",?){0,4}\]|\{\}),?){0,4}\}"#
        ) {
            let _ = parse_request(s.as_bytes());
        }
    }
}
