//! `stories`: a text written by a profile, possibly published and featured.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One row of `stories`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
pub struct Model {
    /// `BIGSERIAL` primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The author; deleting the profile deletes its stories.
    pub author_id: i64,
    /// Up to 200 characters.
    pub title: String,
    /// The text.
    #[sea_orm(column_type = "Text")]
    pub body: String,
    /// Up to 50 characters, optional.
    pub genre: Option<String>,
    /// Visible in listings and feeds.
    pub published: bool,
    /// Shown in `/stories/featured` when also published.
    pub featured: bool,
    /// Counted by `POST /stories/{id}/views`.
    pub view_count: i64,
    /// Set when `published` becomes true.
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub published_at: Option<DateTimeUtc>,
    /// When the story was created.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created_at: DateTimeUtc,
    /// When the story was last changed.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated_at: DateTimeUtc,
}

/// The `stories` table.
#[derive(Copy, Clone, Default, Debug, DeriveEntity)]
#[sea_orm(table_name = "stories")]
pub struct Entity;

/// Relations of a story.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The author profile.
    #[sea_orm(
        belongs_to = "super::profile::Entity",
        from = "Column::AuthorId",
        to = "super::profile::Column::Id",
        on_delete = "Cascade"
    )]
    Author,
}

impl Related<super::profile::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Author.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
