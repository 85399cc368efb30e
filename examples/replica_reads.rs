//! Shows automatic routing: plain SeaORM calls on a `Db` send reads to the
//! `read_replica` alias and writes to `default`, with no routing code.
//! Run with: cargo run -p seaway-examples --example replica_reads

use entity::prelude::*;
use sea_orm::EntityTrait;
use seaway::Scope;
use seaway_examples::{embedded_db, profile};

#[tokio::main]
async fn main() {
    let db = embedded_db("replica-reads").await;
    let ann = profile(&db, "ann").await; // INSERT .. RETURNING: the primary
    let scope = Scope::new();
    let found = scope
        .run(Profile::find_by_id(ann.id).one(&db))
        .await
        .expect("read");
    println!(
        "read {:?} from {:?}",
        found.map(|p| p.username),
        scope.state().last_route()
    );
    println!("routing so far: {:?}", db.routing_stats());
}
