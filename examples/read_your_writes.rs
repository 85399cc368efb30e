//! Shows read-your-writes inside one request: after a scope writes, its reads
//! go to the primary (the sticky flag); `with_primary` forces it anywhere.
//! Run with: cargo run -p seaway-examples --example read_your_writes

use entity::prelude::*;
use sea_orm::EntityTrait;
use seaway::Scope;
use seaway::prelude::*;
use seaway_examples::{embedded_db, profile};

#[tokio::main]
async fn main() {
    let db = embedded_db("ryw").await;
    let scope = Scope::new();
    scope
        .run(async {
            let bob = profile(&db, "bob").await;
            // asked for a replica, served by the primary: this scope wrote
            let again = Profile::find_by_id(bob.id)
                .using_replica()
                .one(&db)
                .await
                .expect("read");
            println!(
                "after the write: {:?} from {:?}",
                again.map(|p| p.username),
                scope.state().last_route()
            );
        })
        .await;
    let forced = db
        .with_primary(|db| async move { Profile::find().all(&db).await })
        .await
        .expect("read");
    println!(
        "with_primary saw {} profile(s); sticky reads: {}",
        forced.len(),
        db.routing_stats().sticky_reads
    );
}
