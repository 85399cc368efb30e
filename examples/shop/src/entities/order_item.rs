//! `order_item`

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A line of an order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "order_item")]
pub struct Model {
    /// Key, with `product_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: i64,
    /// Key, with `order_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: i64,
    /// How many.
    pub quantity: i32,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The order.
    #[sea_orm(
        belongs_to = "super::order::Entity",
        from = "Column::OrderId",
        to = "super::order::Column::Id",
        on_delete = "Cascade"
    )]
    Order,
    /// The product.
    #[sea_orm(
        belongs_to = "super::product::Entity",
        from = "Column::ProductId",
        to = "super::product::Column::Id"
    )]
    Product,
}

impl Related<super::order::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Order.def()
    }
}

impl Related<super::product::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Product.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
