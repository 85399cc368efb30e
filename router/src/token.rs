//! Consistency tokens that cannot be forged: the primary's LSN after a
//! request's writes, bound to the database cluster, signed with a key every
//! instance shares.
//!
//! A token is `s1.` and 76 hex digits: a version byte, flags, the cluster's
//! system identifier and timeline, the LSN, and the first 16 bytes of an
//! HMAC-SHA256 over them. The key is `SEAWAY_TOKEN_SECRET` when set;
//! otherwise it is derived from the primary's URL (its password included)
//! and the cluster's identity, so instances configured alike accept each
//! other's tokens while a client, who knows neither, cannot make one.
//!
//! A token that does not verify, or that names another cluster, is refused
//! (`Db::verify_token`); so is one whose LSN is ahead of the primary after
//! one re-read. A token from another timeline of this cluster (a failover
//! happened since) is honoured by reading the primary.

use crate::lsn::Lsn;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The length of the signature kept in a token.
const MAC_LEN: usize = 16;
const PAYLOAD_LEN: usize = 22;
const PREFIX: &str = "s1.";
/// The token's flag: the write's LSN could not be read; read the primary.
const FLAG_PRIMARY: u8 = 1;

/// Which database cluster a token belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Cluster {
    /// PostgreSQL's `system_identifier` (a hash of the file's path on SQLite).
    pub(crate) system: u64,
    /// The timeline (0 on SQLite).
    pub(crate) timeline: u32,
}

/// A token's content, once its signature and cluster are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    /// What reads must see.
    pub(crate) lsn: Lsn,
    /// Read the primary: the write's LSN was unknown, or the token is from
    /// an earlier timeline.
    pub(crate) primary: bool,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this form.
    #[error("malformed consistency token")]
    Malformed,
    /// Its signature does not verify: this service did not issue it.
    #[error("consistency token not issued by this service")]
    Forged,
    /// Issued for another database cluster.
    #[error("consistency token of another database cluster")]
    OtherCluster,
    /// Its position is ahead of the primary's.
    #[error("consistency token ahead of the primary")]
    Ahead,
}

/// Issues and checks tokens.
pub(crate) struct Tokens {
    key: [u8; 32],
    cluster: Cluster,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens of `cluster`, signed with `secret`, or with a key derived from
    /// `primary_url` and the cluster.
    pub(crate) fn new(secret: Option<&str>, primary_url: &str, cluster: Cluster) -> Self {
        let mut h = Sha256::new();
        match secret {
            Some(s) => {
                h.update(b"seaway-token-secret\0");
                h.update(s.as_bytes());
            }
            None => {
                h.update(b"seaway-token-derived\0");
                h.update(primary_url.as_bytes());
                h.update([0]);
                h.update(cluster.system.to_be_bytes());
            }
        }
        Self {
            key: h.finalize().into(),
            cluster,
        }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        m.update(payload);
        m
    }

    /// A token for `lsn`; `primary` when the write's LSN is unknown.
    pub(crate) fn issue(&self, lsn: Lsn, primary: bool) -> String {
        let mut p = [0u8; PAYLOAD_LEN];
        p[0] = 1;
        p[1] = if primary { FLAG_PRIMARY } else { 0 };
        p[2..10].copy_from_slice(&self.cluster.system.to_be_bytes());
        p[10..14].copy_from_slice(&self.cluster.timeline.to_be_bytes());
        p[14..22].copy_from_slice(&lsn.0.to_be_bytes());
        let tag = self.mac(&p).finalize().into_bytes();
        let mut s = String::with_capacity(PREFIX.len() + 2 * (PAYLOAD_LEN + MAC_LEN));
        s.push_str(PREFIX);
        for b in p.iter().chain(&tag[..MAC_LEN]) {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Checks a token's form, signature and cluster (not its position: see
    /// `Db::verify_token`).
    pub(crate) fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let hex = token
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(TokenError::Malformed)?;
        if hex.len() != 2 * (PAYLOAD_LEN + MAC_LEN) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed);
        }
        let mut raw = [0u8; PAYLOAD_LEN + MAC_LEN];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| TokenError::Malformed)?;
        }
        let (p, tag) = raw.split_at(PAYLOAD_LEN);
        if p[0] != 1 {
            return Err(TokenError::Malformed);
        }
        self.mac(p)
            .verify_truncated_left(tag)
            .map_err(|_| TokenError::Forged)?;
        let system = u64::from_be_bytes(p[2..10].try_into().map_err(|_| TokenError::Malformed)?);
        let timeline = u32::from_be_bytes(p[10..14].try_into().map_err(|_| TokenError::Malformed)?);
        let lsn = u64::from_be_bytes(p[14..22].try_into().map_err(|_| TokenError::Malformed)?);
        if system != self.cluster.system {
            return Err(TokenError::OtherCluster);
        }
        Ok(Verified {
            lsn: Lsn(lsn),
            primary: p[1] & FLAG_PRIMARY != 0 || timeline != self.cluster.timeline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: Option<&str>, system: u64, timeline: u32) -> Tokens {
        Tokens::new(
            secret,
            "postgres://app:pw@db/x",
            Cluster { system, timeline },
        )
    }

    #[test]
    fn an_issued_token_verifies_on_every_instance_configured_alike() {
        let a = tokens(None, 7, 1);
        let b = tokens(None, 7, 1);
        let t = a.issue(Lsn(0x16B3748), false);
        assert_eq!(
            b.verify(&t),
            Ok(Verified {
                lsn: Lsn(0x16B3748),
                primary: false
            })
        );
        let p = a.issue(Lsn(5), true);
        assert!(b.verify(&p).expect("ok").primary);
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let a = tokens(Some("s".repeat(32).as_str()), 7, 1);
        let t = a.issue(Lsn(100), false);
        // any byte changed
        for i in PREFIX.len()..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let forged = String::from_utf8(bytes).expect("ascii");
            assert!(a.verify(&forged).is_err(), "{forged}");
        }
        for junk in [
            "",
            "0/16B3748",
            "FFFFFFF0/00000001",
            "s1.",
            "s1.zz",
            &format!("{t}0"),
        ] {
            assert_eq!(a.verify(junk), Err(TokenError::Malformed), "{junk}");
        }
        // another key
        assert_eq!(
            tokens(Some("t".repeat(32).as_str()), 7, 1).verify(&t),
            Err(TokenError::Forged)
        );
        assert_eq!(tokens(None, 7, 1).verify(&t), Err(TokenError::Forged));
        // the same key, another cluster
        let secret = "s".repeat(32);
        assert_eq!(
            tokens(Some(&secret), 8, 1).verify(&t),
            Err(TokenError::OtherCluster)
        );
        // another timeline of the same cluster: read the primary
        assert!(tokens(Some(&secret), 7, 2).verify(&t).expect("ok").primary);
    }
}
