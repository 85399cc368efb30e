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
//!
//! # Static table names
//!
//! Each module declares its `Entity` struct itself, with
//! `#[derive(DeriveEntity)] #[sea_orm(table_name = "..")]`, instead of giving
//! `table_name` to `DeriveEntityModel`. The entity `DeriveEntityModel`
//! generates implements `Iden` without `quoted`, so its name is an owned
//! `String`. SeaORM qualifies every column of a query with that name, so a
//! `find_by_id` of a story allocated eleven strings, SeaQuery wrote each one a
//! character at a time (it escapes owned names), and dropping the query freed
//! them. Declared this way, the name is a `&'static str` in every query. On a
//! cached `find_by_id(..).one(&db)` that is about a quarter of the
//! instructions, cached or not (BENCHMARKS.md).

pub mod follow;
pub mod prelude;
pub mod profile;
pub mod story;

#[cfg(test)]
mod tests {
    use sea_orm::Iden;
    use std::borrow::Cow;

    #[test]
    fn table_names_are_static_identifiers() {
        let names = [
            (crate::story::Entity.quoted(), "stories"),
            (crate::profile::Entity.quoted(), "profiles"),
            (crate::follow::Entity.quoted(), "follows"),
        ];
        for (name, want) in names {
            assert_eq!(name, want);
            assert!(matches!(name, Cow::Borrowed(_)), "{want} is owned");
        }
    }
}
