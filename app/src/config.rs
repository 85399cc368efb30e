//! The service's settings: the library's, plus where to listen.

use std::net::SocketAddr;

/// `LISTEN_ADDR` default.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:3000";
/// The service's embedded default: an SQLite file under `./data/` (the
/// library's own default is an in-memory database).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/seaway.db?mode=rwc";

/// Settings read from the environment (API.md's table).
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The data layer's settings.
    pub seaway: seaway::Config,
    /// Where the service listens.
    pub listen_addr: SocketAddr,
}

impl AppConfig {
    /// Reads every variable; an unusable value is an error naming it.
    ///
    /// # Errors
    ///
    /// The first bad variable, named, without secrets.
    pub fn from_env() -> Result<Self, seaway::Error> {
        let mut seaway = seaway::Config::from_env()?;
        if std::env::var("DATABASE_URL").map_or(true, |v| v.trim().is_empty()) {
            seaway.database_url = DEFAULT_DATABASE_URL.to_owned();
        }
        // an embedded file: its directory created, WAL so the read-only
        // twin reads while the primary writes
        seaway.sqlite_wal = true;
        seaway.create_dirs = true;
        let raw = std::env::var("LISTEN_ADDR")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_LISTEN_ADDR.to_owned());
        let listen_addr = raw.trim().parse().map_err(|_| seaway::Error::Config {
            var: "LISTEN_ADDR".into(),
            message: format!("expected host:port like 127.0.0.1:3000, got {raw:?}"),
        })?;
        Ok(Self {
            seaway,
            listen_addr,
        })
    }
}
