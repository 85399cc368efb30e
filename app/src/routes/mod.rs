//! Handlers, one module per resource.

pub mod follows;
pub mod ops;
pub mod profiles;
pub mod stories;

use crate::error::ApiError;
use crate::extract::Page;
use crate::wire::List;
use sea_orm::{EntityTrait, QuerySelect, Select};
use seaway::prelude::*;
use seaway::{CacheValue, Db};

/// One page of `select`, read through a replica and the cache, as a list of
/// wire items: how every listing endpoint answers.
pub(crate) async fn page_of<E, T>(
    db: &Db,
    select: Select<E>,
    page: Page,
) -> Result<axum::Json<List<T>>, ApiError>
where
    E: EntityTrait,
    E::Model: CacheValue + Into<T>,
{
    listed(db, select.limit(page.limit).offset(page.offset), page).await
}

/// As [`page_of`], for a `select` that already picks the rows of `page`.
pub(crate) async fn listed<E, T>(
    db: &Db,
    select: Select<E>,
    page: Page,
) -> Result<axum::Json<List<T>>, ApiError>
where
    E: EntityTrait,
    E::Model: CacheValue + Into<T>,
{
    let rows = select.using_replica().cached().all(db).await?;
    Ok(axum::Json(List::new(rows, page)))
}
