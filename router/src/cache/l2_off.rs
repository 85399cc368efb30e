//! L2 when the crate is built without the `redis` feature: a Redis URL is a
//! configuration error, so no value of this type ever exists.

use super::breaker::Breaker;
use crate::config::Config;
use crate::error::Error;
use crate::lsn::Lsn;
use crate::tag::TagId;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Never constructed.
pub(crate) struct L2 {
    never: Infallible,
    pub(crate) timeout: Duration,
    pub(crate) breaker: Breaker,
}

/// As with Redis.
pub(crate) struct Remote {
    pub(crate) epoch: Option<String>,
    pub(crate) versions: Vec<(u64, u64)>,
}

/// As with Redis.
pub(crate) struct Taken {
    pub(crate) version: u64,
    pub(crate) durable: bool,
    pub(crate) lsns: Vec<u64>,
}

/// As with Redis.
pub(crate) enum Refused {
    Epoch,
    #[allow(dead_code)]
    Failed,
}

impl L2 {
    pub(crate) fn new(_: &str, _: &Config, _: u64) -> Result<Self, Error> {
        Err(Error::Config {
            var: "REDIS_URL".into(),
            message: "seaway was built without its `redis` feature".into(),
        })
    }
    pub(crate) async fn get(&self, _: u128, _: &[TagId]) -> Option<(Option<Vec<u8>>, Remote)> {
        match self.never {}
    }
    pub(crate) async fn versions(&self, _: &[TagId]) -> Option<Remote> {
        match self.never {}
    }
    pub(crate) fn put(self: &Arc<Self>, _: u128, _: Vec<u8>, _: Duration) {
        match self.never {}
    }
    pub(crate) async fn invalidate(
        &self,
        _: &str,
        _: &[(TagId, bool)],
        _: Lsn,
    ) -> Result<Taken, Refused> {
        match self.never {}
    }
    pub(crate) async fn ensure_epoch(&self) -> Option<String> {
        match self.never {}
    }
    pub(crate) async fn check_policy(&self) {
        match self.never {}
    }
}
