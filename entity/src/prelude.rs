//! The entities under their conventional names: `Profile`, `Story`, `Follow`.

pub use super::follow::Entity as Follow;
pub use super::profile::Entity as Profile;
pub use super::story::Entity as Story;
