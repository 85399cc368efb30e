//! Shows a consistency token carried between two requests: the first request
//! writes and gets a token; the second, on any instance, sends it back and
//! reads at least that fresh (from a replica only if it has replayed it).
//! Run with: cargo run -p seaway-examples --example consistency_token

use entity::prelude::*;
use sea_orm::EntityTrait;
use seaway::prelude::*;
use seaway::{Lsn, Scope};
use seaway_examples::{embedded_db, profile};

#[tokio::main]
async fn main() {
    let db = embedded_db("token").await;
    // request 1: a write; the layer would send this as X-Consistency-Token
    let first = Scope::new();
    let id = first.run(profile(&db, "carol")).await.id;
    let token = db
        .token_for(first.state())
        .expect("the request wrote")
        .to_string();
    println!("X-Consistency-Token: {token}");
    // request 2: carries the token back
    let second = Scope::with_min_lsn(Lsn::parse(&token).expect("token"));
    let seen = second
        .run(Profile::find_by_id(id).using_replica().cached().one(&db))
        .await
        .expect("read");
    println!(
        "second request saw {:?} from {:?}",
        seen.map(|p| p.username),
        second.state().last_route()
    );
}
