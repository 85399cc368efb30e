//! `follows`: a composite primary key and an index on `following_id`.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `follows` with two cascading foreign keys to `profiles`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("follows")
                    .col(big_integer("follower_id"))
                    .col(big_integer("following_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("follower_id").col("following_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_follows_follower_id")
                            .from("follows", "follower_id")
                            .to("profiles", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_follows_following_id")
                            .from("follows", "following_id")
                            .to("profiles", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_follows_following_id")
                    .table("follows")
                    .col("following_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("follows").to_owned())
            .await
    }
}
