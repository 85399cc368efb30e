//! An entry as Redis stores it.

use serde::{Deserialize, Serialize};

/// An entry as stored. The payload is written as postcard bytes and read
/// back borrowed, so a hit copies it nowhere.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// The epoch its versions belong to.
    pub(crate) epoch: u64,
    /// What the source proved it fresh to.
    pub(crate) fresh_lsn: u64,
    /// What it depends on, and each one's version when it was loaded.
    pub(crate) tags: Vec<u64>,
    pub(crate) versions: Vec<u64>,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: &'a [u8],
}

/// Decodes an entry; anything that does not decode is `None` (a miss).
pub(crate) fn decode(bytes: &[u8]) -> Option<Envelope<'_>> {
    let env: Envelope = postcard::from_bytes(bytes).ok()?;
    (env.tags.len() == env.versions.len()).then_some(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_does_not_decode() {
        let payload = postcard::to_allocvec(&vec![1i64, 2, 3]).expect("encode");
        let env = Envelope {
            epoch: 9,
            fresh_lsn: 42,
            tags: vec![7, 8],
            versions: vec![1, 2],
            payload: &payload,
        };
        let bytes = postcard::to_allocvec(&env).expect("encode");
        let d = decode(&bytes).expect("decode");
        assert_eq!(
            (d.epoch, d.fresh_lsn, d.tags, d.versions),
            (9, 42, vec![7, 8], vec![1, 2])
        );
        let v: Vec<i64> = postcard::from_bytes(d.payload).expect("payload");
        assert_eq!(v, [1, 2, 3]);
        for bytes in [&b""[..], b"garbage", &[0xff; 40]] {
            assert!(decode(bytes).is_none());
        }
    }
}
