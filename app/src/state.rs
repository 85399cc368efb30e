//! What every handler shares.

use seaway::Db;

/// The application state: the routed database handle. Cloning is an `Arc` increment.
#[derive(Clone)]
pub struct AppState {
    /// Routed connections, scope-aware, with the query cache.
    pub db: Db,
    /// JSON bodies rendered from cached rows, by the rows' identity.
    pub bodies: crate::render::Bodies,
}
