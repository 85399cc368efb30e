//! `profiles`: a user with a unique username.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One row of `profiles`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
pub struct Model {
    /// `BIGSERIAL` primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique, `[A-Za-z0-9_]{1,50}`.
    #[sea_orm(unique)]
    pub username: String,
    /// Up to 100 characters.
    pub display_name: String,
    /// Free text, empty by default.
    pub bio: String,
    /// When the profile was created.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created_at: DateTimeUtc,
    /// When the profile was last changed.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated_at: DateTimeUtc,
}

/// The `profiles` table.
#[derive(Copy, Clone, Default, Debug, DeriveEntity)]
#[sea_orm(table_name = "profiles")]
pub struct Entity;

/// Relations of a profile.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The stories this profile wrote.
    #[sea_orm(has_many = "super::story::Entity")]
    Story,
}

impl Related<super::story::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Story.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// The profiles that follow a profile: `profile.find_linked(Followers)`.
#[derive(Debug, Clone, Copy)]
pub struct Followers;

impl Linked for Followers {
    type FromEntity = Entity;
    type ToEntity = Entity;

    fn link(&self) -> Vec<RelationDef> {
        // profiles.id = follows.following_id, then follows.follower_id = profiles.id
        vec![
            super::follow::Relation::Following.def().rev(),
            super::follow::Relation::Follower.def(),
        ]
    }
}

/// The profiles a profile follows: `profile.find_linked(Followings)`.
#[derive(Debug, Clone, Copy)]
pub struct Followings;

impl Linked for Followings {
    type FromEntity = Entity;
    type ToEntity = Entity;

    fn link(&self) -> Vec<RelationDef> {
        vec![
            super::follow::Relation::Follower.def().rev(),
            super::follow::Relation::Following.def(),
        ]
    }
}
