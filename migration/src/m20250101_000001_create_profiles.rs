//! `profiles`: id, unique username, display name, bio, timestamps.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `profiles`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("profiles")
                    .col(crate::id_column(manager))
                    .col(string_len_uniq("username", 50))
                    .col(string_len("display_name", 100))
                    .col(text("bio").default(""))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("profiles").to_owned())
            .await
    }
}
