//! `category`

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A category of products.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "category")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Its name.
    pub name: String,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Its product links.
    #[sea_orm(has_many = "super::product_category::Entity")]
    ProductCategory,
}

impl Related<super::product::Entity> for Entity {
    fn to() -> RelationDef {
        super::product_category::Relation::Product.def()
    }
    fn via() -> Option<RelationDef> {
        Some(super::product_category::Relation::Category.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
