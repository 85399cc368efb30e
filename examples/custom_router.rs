//! Shows a custom `DatabaseRouter`: reads of `follows` go to the primary,
//! everything else is routed as usual.
//! Run with: cargo run -p seaway-examples --example custom_router

use entity::prelude::*;
use migration::{Migrator, MigratorTrait};
use sea_orm::EntityTrait;
use seaway::{Config, DEFAULT, DatabaseRouter, Db, Hints, Scope};

/// The social graph is read where it is written.
struct FollowsOnPrimary;

impl DatabaseRouter for FollowsOnPrimary {
    fn db_for_read(&self, hints: &Hints<'_>) -> Option<&str> {
        hints.touches("follows").then_some(DEFAULT)
    }
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("seaway-example-router-{}", std::process::id()));
    let url = format!("sqlite://{}/example.db?mode=rwc", dir.display());
    let db = Db::connect_with_router(
        Config::builder()
            .database_url(url)
            .sqlite_file_defaults(true)
            .build(),
        FollowsOnPrimary,
    )
    .await
    .expect("connect");
    Migrator::up(&db, None).await.expect("migrate");
    for (what, route) in [
        ("follows", {
            let s = Scope::new();
            s.run(Follow::find().all(&db)).await.expect("q");
            s.state().last_route()
        }),
        ("stories", {
            let s = Scope::new();
            s.run(Story::find().all(&db)).await.expect("q");
            s.state().last_route()
        }),
    ] {
        println!("{what}: {route:?}");
    }
}
