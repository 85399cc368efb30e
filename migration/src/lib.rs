//! Seaway's schema migrations (one table, or one index, per file) and the guard that keeps
//! them off read replicas.
//!
//! # Layout
//!
//! * [`Migrator`]: the migrations of `shared/API.md`, in order.
//! * [`guard`]: [`ensure_primary`] refuses a server in recovery;
//!   [`redact_url`] hides the password of a database URL.
//! * `main.rs`: the migration CLI (`up`, `down`, `status`, `fresh`, `refresh`, `reset`).

pub use sea_orm_migration::prelude::*;

pub mod guard;
mod m20250101_000001_create_profiles;
mod m20250101_000002_create_stories;
mod m20250101_000003_create_follows;
mod m20261124_000004_feed_index;

pub use guard::{GuardError, connect_primary, ensure_primary, redact_url};

/// The `id` column of API.md: `BIGSERIAL PRIMARY KEY` on PostgreSQL (spelled
/// out, so that no SeaORM feature is needed to get it), SQLite's rowid alias
/// `INTEGER PRIMARY KEY AUTOINCREMENT` elsewhere.
pub(crate) fn id_column(manager: &SchemaManager) -> ColumnDef {
    let mut c = ColumnDef::new("id");
    match manager.get_database_backend() {
        sea_orm::DbBackend::Postgres => c.custom("BIGSERIAL").not_null().primary_key(),
        _ => c.integer().not_null().auto_increment().primary_key(),
    };
    c
}

/// The embedded default database, shared with the service: an SQLite file
/// under `./data/`, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/seaway.db?mode=rwc";

/// All migrations of the schema, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_profiles::Migration),
            Box::new(m20250101_000002_create_stories::Migration),
            Box::new(m20250101_000003_create_follows::Migration),
            Box::new(m20261124_000004_feed_index::Migration),
        ]
    }
}
