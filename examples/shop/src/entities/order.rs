//! `order`

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An order, with a JSON column of delivery details.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "order")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Who ordered.
    pub customer_id: i64,
    /// `open`, `paid`, `shipped`.
    pub status: String,
    /// In cents.
    pub total_cents: i64,
    /// Delivery details.
    pub delivery: Json,
    /// When.
    pub created_at: DateTimeUtc,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Who ordered.
    #[sea_orm(
        belongs_to = "super::customer::Entity",
        from = "Column::CustomerId",
        to = "super::customer::Column::Id",
        on_delete = "Cascade"
    )]
    Customer,
    /// Its lines.
    #[sea_orm(has_many = "super::order_item::Entity")]
    OrderItem,
}

impl Related<super::customer::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Customer.def()
    }
}

impl Related<super::order_item::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OrderItem.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
