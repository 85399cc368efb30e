//! A shop on Seaway: customers, products in categories (a many-to-many),
//! orders with items and a JSON column. Its entities are plain SeaORM
//! entities, as `sea-orm-cli generate entity --with-serde both` writes them
//! (serde because the application caches them); it uses Seaway only through
//! its public API, as any SeaORM project would.

pub mod entities;
mod migration;

pub use migration::Migrator;
