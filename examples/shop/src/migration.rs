//! The shop's schema, from its entities (`Schema::create_table_from_entity`):
//! the DDL plain SeaORM produces for them, identity keys included.

use crate::entities::prelude::*;
use sea_orm::{EntityTrait, Schema};
use sea_orm_migration::prelude::*;

/// The shop's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateAll)]
    }
}

#[derive(DeriveMigrationName)]
struct CreateAll;

async fn create<E: EntityTrait>(manager: &SchemaManager<'_>, e: E) -> Result<(), DbErr> {
    let schema = Schema::new(manager.get_database_backend());
    manager
        .create_table(schema.create_table_from_entity(e))
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAll {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(manager, Customer).await?;
        create(manager, Product).await?;
        create(manager, Category).await?;
        create(manager, Order).await?;
        create(manager, OrderItem).await?;
        create(manager, ProductCategory).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "product_category",
            "order_item",
            "order",
            "category",
            "product",
            "customer",
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}
