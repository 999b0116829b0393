//! Message authentication for the sync protocol: HMAC-SHA256 with a shared key read from
//! a file that only ctgate's user may read.
//!
//! The key file is refused when its group or other permission bits are set, or when it
//! belongs to another user, with an error naming the file and its mode: a key others can
//! read authenticates nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

/// Bytes of the MAC appended to an authenticated message.
pub const MAC_LEN: usize = 32;
/// The shortest key accepted.
pub const MIN_KEY_LEN: usize = 16;

/// A shared HMAC-SHA256 key (kept as the keyed MAC state, cloned per message).
#[derive(Clone)]
pub struct SyncKey(Hmac<Sha256>);

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncKey(..)")
    }
}

impl SyncKey {
    /// A key from its bytes (at least [`MIN_KEY_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<SyncKey, String> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(format!(
                "sync key is {} bytes; at least {MIN_KEY_LEN} are required",
                bytes.len()
            ));
        }
        <Hmac<Sha256> as Mac>::new_from_slice(bytes)
            .map(SyncKey)
            .map_err(|e| format!("sync key: {e}"))
    }

    /// Reads the key from `path` ([`crate::config::read_key_file`]: only ctgate's user may
    /// read it).
    pub fn from_file(path: &Path) -> Result<SyncKey, String> {
        SyncKey::new(&crate::config::read_key_file(path)?)
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.0.clone()
    }

    /// The MAC of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac();
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    /// True when `tag` is the MAC of `msg` (compared in constant time).
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        let mut m = self.mac();
        m.update(msg);
        m.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc4231_test_case_1() {
        // RFC 4231 test case 1: a 20-byte key of 0x0b and "Hi There".
        let k = SyncKey::new(&[0x0b; 20]).unwrap();
        assert_eq!(
            hex(&k.sign(b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert!(k.verify(b"Hi There", &k.sign(b"Hi There")));
        assert!(!k.verify(b"Hi there", &k.sign(b"Hi There")));
    }

    #[test]
    fn key_file_readable_by_group_is_refused_with_its_mode() {
        let dir = crate::test_dir::TestDir::new("synckey");
        let p = dir.file("key", "0123456789abcdef0123\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = SyncKey::from_file(&p).unwrap_err();
        assert!(
            e.contains("mode 0640") && e.contains("readable only by"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(SyncKey::from_file(&p).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = SyncKey::from_file(&p).unwrap();
        assert_eq!(
            k.sign(b"x"),
            SyncKey::new(b"0123456789abcdef0123").unwrap().sign(b"x")
        );
        std::fs::write(&p, "short\n").unwrap();
        assert!(SyncKey::from_file(&p).unwrap_err().contains("at least 16"));
    }
}
