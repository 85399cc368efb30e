//! What every handler shares.

use seaway::Db;

/// The application state: the routed database handle. Cloning is an `Arc` increment.
#[derive(Clone)]
pub struct AppState {
    /// Routed connections, scope-aware, with the query cache.
    pub db: Db,
}
