//! Shows a cached listing and its invalidation: the second read is an L1 hit,
//! a write to `stories` makes the next read a miss that sees the new row.
//! Run with: cargo run -p seaway-examples --example cached_listing

use entity::prelude::*;
use entity::story;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use seaway::Scope;
use seaway::prelude::*;
use seaway_examples::{embedded_db, profile, story};

async fn listing(db: &seaway::Db) -> usize {
    let scope = Scope::new();
    let rows = scope
        .run(
            Story::find()
                .filter(story::Column::Published.eq(true))
                .order_by_desc(story::Column::PublishedAt)
                .using_replica()
                .cached()
                .all(db),
        )
        .await
        .expect("listing");
    println!(
        "{} stories, cache: {:?}",
        rows.len(),
        scope.state().last_cache()
    );
    rows.len()
}

#[tokio::main]
async fn main() {
    let db = embedded_db("cached").await;
    let ann = profile(&db, "ann").await;
    story(&db, ann.id, "First").await;
    listing(&db).await; // miss
    listing(&db).await; // hit-l1
    story(&db, ann.id, "Second").await; // invalidates the `stories` tag
    listing(&db).await; // miss, 2 stories
    println!("{:?}", db.cache_stats().await);
}
