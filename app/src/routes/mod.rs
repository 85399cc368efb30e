//! Handlers, one module per resource.

pub mod follows;
pub mod ops;
pub mod profiles;
pub mod stories;

use crate::error::ApiError;
use crate::extract::Page;
use crate::render::{JsonBody, json};
use crate::state::AppState;
use crate::wire::List;
use sea_orm::{EntityTrait, QuerySelect, Select};
use seaway::CacheValue;
use seaway::prelude::*;
use serde::Serialize;
use std::sync::Arc;

/// One page of `select`, read through a replica and the cache, as a list of
/// wire items: how every listing endpoint answers.
pub(crate) async fn page_of<E, T>(
    s: &AppState,
    select: Select<E>,
    page: Page,
) -> Result<JsonBody, ApiError>
where
    E: EntityTrait,
    E::Model: CacheValue + Into<T>,
    T: Serialize,
{
    let rows = select
        .limit(page.limit)
        .offset(page.offset)
        .using_replica()
        .cached()
        .all_shared(&s.db)
        .await?;
    Ok(page_body::<E::Model, T>(s, &rows, page).await)
}

/// The list body of `rows`: rendered once per cached page (`crate::render`),
/// so an L1 hit neither copies nor serializes the rows again.
pub(crate) async fn page_body<M, T>(s: &AppState, rows: &Arc<Vec<M>>, page: Page) -> JsonBody
where
    M: CacheValue + Into<T>,
    T: Serialize,
{
    let body = s
        .bodies
        .body(rows, page, |rows: &Vec<M>, page| {
            json(&List::<T>::new(rows.to_vec(), page))
        })
        .await;
    JsonBody(body)
}
