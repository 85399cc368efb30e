//! The shop's entities.

pub mod category;
pub mod customer;
pub mod order;
pub mod order_item;
pub mod product;
pub mod product_category;

/// The entities by name.
pub mod prelude {
    pub use super::category::Entity as Category;
    pub use super::customer::Entity as Customer;
    pub use super::order::Entity as Order;
    pub use super::order_item::Entity as OrderItem;
    pub use super::product::Entity as Product;
    pub use super::product_category::Entity as ProductCategory;
}
