//! `stories` and its four listing indexes.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `stories` with a cascading foreign key to `profiles`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("stories")
                    .col(crate::id_column(manager))
                    .col(big_integer("author_id"))
                    .col(string_len("title", 200))
                    .col(text("body"))
                    .col(string_len_null("genre", 50))
                    .col(boolean("published").default(false))
                    .col(boolean("featured").default(false))
                    .col(big_integer("view_count").default(0))
                    .col(timestamp_with_time_zone_null("published_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_stories_author_id")
                            .from("stories", "author_id")
                            .to("profiles", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes: [(&str, &str, Option<&str>); 4] = [
            (
                "idx_stories_author_published_at",
                "author_id",
                Some("published_at"),
            ),
            (
                "idx_stories_published_published_at",
                "published",
                Some("published_at"),
            ),
            (
                "idx_stories_published_view_count",
                "published",
                Some("view_count"),
            ),
            ("idx_stories_genre", "genre", None),
        ];
        for (name, first, desc) in indexes {
            let mut index = Index::create();
            index.name(name).table("stories").col(first);
            if let Some(col) = desc {
                index.col((Alias::new(col), IndexOrder::Desc));
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("stories").to_owned())
            .await
    }
}
