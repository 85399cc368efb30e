//! Handlers, one module per resource.

pub mod follows;
pub mod ops;
pub mod profiles;
pub mod stories;
