//! SeaORM entities for the schema of `shared/API.md`: profiles, stories and
//! follows, with their relations. Data only: nothing here knows about routing
//! or caching. Tag names used by the cache are the table names below.
//!
//! # Layout
//!
//! * [`profile`]: `profiles`, with links to followers and followings.
//! * [`story`]: `stories`, each belonging to its author profile.
//! * [`follow`]: `follows`, two `belongs_to` told apart as `Follower` and `Following`.
//!
//! # Serialization
//!
//! Models derive serde so the query cache can store them. Timestamps are
//! written as integer microseconds since the epoch (`chrono::serde::ts_microseconds`),
//! which decodes about fifty times faster than RFC 3339 text; HTTP wire types
//! in the service convert them to RFC 3339.

pub mod follow;
pub mod prelude;
pub mod profile;
pub mod story;
