//! `product`

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A product.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "product")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Its name.
    pub name: String,
    /// In cents.
    pub price_cents: i64,
    /// In stock.
    pub stock: i32,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Lines that order it.
    #[sea_orm(has_many = "super::order_item::Entity")]
    OrderItem,
    /// Its category links.
    #[sea_orm(has_many = "super::product_category::Entity")]
    ProductCategory,
}

impl Related<super::order_item::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OrderItem.def()
    }
}

impl Related<super::category::Entity> for Entity {
    fn to() -> RelationDef {
        super::product_category::Relation::Category.def()
    }
    fn via() -> Option<RelationDef> {
        Some(super::product_category::Relation::Product.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
