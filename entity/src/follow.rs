//! `follows`: `follower_id` follows `following_id`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One row of `follows`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
pub struct Model {
    /// The profile that follows.
    #[sea_orm(primary_key, auto_increment = false)]
    pub follower_id: i64,
    /// The profile being followed.
    #[sea_orm(primary_key, auto_increment = false)]
    pub following_id: i64,
    /// When the follow was made.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created_at: DateTimeUtc,
}

/// The `follows` table.
#[derive(Copy, Clone, Default, Debug, DeriveEntity)]
#[sea_orm(table_name = "follows")]
pub struct Entity;

/// Relations of a follow: two links to `profiles`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The profile that follows.
    #[sea_orm(
        belongs_to = "super::profile::Entity",
        from = "Column::FollowerId",
        to = "super::profile::Column::Id",
        on_delete = "Cascade"
    )]
    Follower,
    /// The profile being followed.
    #[sea_orm(
        belongs_to = "super::profile::Entity",
        from = "Column::FollowingId",
        to = "super::profile::Column::Id",
        on_delete = "Cascade"
    )]
    Following,
}

impl ActiveModelBehavior for ActiveModel {}
