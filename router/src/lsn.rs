//! PostgreSQL log sequence numbers, and the consistency token that carries one.

use crate::token::TokenError as Error;
use std::fmt;

/// A WAL position. `X/Y` in PostgreSQL's text form; ordered.
///
/// On SQLite (no WAL positions shared with replicas) the library counts its
/// own writes instead, and the same type carries that count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Zero: "no requirement".
    pub const ZERO: Lsn = Lsn(0);
    /// Fully caught up (used for a replica that shares the primary's file).
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// Parses PostgreSQL's `X/Y` text form (both parts hexadecimal).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for anything else.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (hi, lo) = s.trim().split_once('/').ok_or(Error::Malformed)?;
        let ok =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(hi) || !ok(lo) {
            return Err(Error::Malformed);
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| Error::Malformed)?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| Error::Malformed)?;
        Ok(Lsn((hi << 32) | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        for s in ["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(Lsn::parse(s).expect(s).to_string(), s);
        }
        assert!(Lsn::parse("1/0").expect("lsn") > Lsn::parse("0/FFFFFFFF").expect("lsn"));
    }

    #[test]
    fn rejects_malformed_tokens() {
        for s in [
            "",
            "/",
            "1/",
            "/1",
            "x/1",
            "1/1/1",
            "123456789/0",
            "-1/0",
            "1 / 2",
            "0x1/2",
        ] {
            assert!(Lsn::parse(s).is_err(), "{s:?} parsed");
        }
    }
}
