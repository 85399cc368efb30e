//! The shop on Seaway, as its own application would use the library: every
//! select kind routed and cached, paginate and cursor, a stream, a loader,
//! transactions, a migration through `Db`, `prevent_writes`, a spawned task
//! carrying the request's scope, and a unit test on `MockDatabase`.
//!
//! The cluster tests need the PostgreSQL primary, its two streaming replicas
//! and Redis that `scripts/test.sh` starts (`scripts/cluster.sh env` prints
//! their addresses); without them they print why they are skipped, unless
//! `SEAWAY_REQUIRE_CLUSTER=1`, where they fail.

use futures::TryStreamExt;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, Database, DbBackend, DbErr, EntityTrait,
    FromQueryResult, LoaderTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Schema,
    Set, Statement, StreamTrait, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use seaway::prelude::*;
use seaway::{CacheOutcome, Config, Db, RawSelect, ReadWriteRouter, Route, Scope};
use serde::{Deserialize, Serialize};
use shop::Migrator;
use shop::entities::prelude::*;
use shop::entities::{category, customer, order, order_item, product, product_category};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// The cluster's admin URLs: the primary, the replicas, Redis.
struct Cluster {
    primary: String,
    replicas: Vec<String>,
    redis: String,
}

fn cluster() -> Option<Cluster> {
    let primary = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    match (
        primary,
        std::env::var("READ_REPLICA_URLS").ok(),
        std::env::var("REDIS_URL").ok(),
    ) {
        (Some(primary), Some(replicas), Some(redis)) => Some(Cluster {
            primary,
            replicas: replicas.split(',').map(str::to_owned).collect(),
            redis,
        }),
        _ => {
            assert!(
                std::env::var("SEAWAY_REQUIRE_CLUSTER").as_deref() != Ok("1"),
                "the cluster is required (SEAWAY_REQUIRE_CLUSTER=1) but DATABASE_URL, READ_REPLICA_URLS or REDIS_URL is missing"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: needs the PostgreSQL primary + replicas + Redis; run scripts/test.sh"
            );
            None
        }
    }
}

fn with_db(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL");
    format!("{base}/{name}")
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}: never");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh database for one test, its `Db` (both replicas, Redis under a
/// prefix of its own), migrated through the `Db`, on every replica.
async fn shop_db(test: &str) -> Option<Db> {
    shop_db_made(test, false).await
}

/// As [`shop_db`]; with `sync`, the schema made by SeaORM's
/// `SchemaBuilder::sync(&db)` instead of the migrations.
async fn shop_db_made(test: &str, sync: bool) -> Option<Db> {
    let c = cluster()?;
    let name = format!("shop_{test}_{:08x}", rand_u32());
    let admin = Database::connect(&c.primary).await.expect("primary");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let replicas: Vec<String> = c.replicas.iter().map(|r| with_db(r, &name)).collect();
    for r in &replicas {
        eventually("the database on the replica", || async {
            Database::connect(r).await.is_ok()
        })
        .await;
    }
    let mut b = Config::builder()
        .database_url(with_db(&c.primary, &name))
        .redis_url(&c.redis)
        .key_prefix(format!("shop-test:{name}"))
        .health_check_interval(Duration::from_millis(100))
        .pool(1, 8);
    for r in &replicas {
        b = b.replica(r);
    }
    let db = Db::connect(b.build()).await.expect("connect");
    if sync {
        // SeaORM's schema sync, given the Db: read and run on the primary
        let builder = sea_orm::Schema::new(DbBackend::Postgres)
            .builder()
            .register(Customer)
            .register(Product)
            .register(Category)
            .register(ProductCategory)
            .register(Order)
            .register(OrderItem);
        builder.sync(&db).await.expect("schema sync through Db");
    } else {
        // SeaORM's own call, given the Db: it runs on the primary.
        Migrator::up(&db, None).await.expect("migrate through Db");
    }
    for n in db.replica_names() {
        let pool = db.replica_pool(&n).expect("pool").clone();
        eventually("the schema on the replica", || {
            let pool = pool.clone();
            async move {
                pool.query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT 1 FROM product_category LIMIT 1",
                ))
                .await
                .is_ok()
            }
        })
        .await;
    }
    Some(db)
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    t ^ std::process::id().rotate_left(16)
}

/// Waits until `sql` (a count named `n`) says `n` on every replica.
async fn replicated(db: &Db, sql: &'static str, n: i64) {
    for name in db.replica_names() {
        let pool = db.replica_pool(&name).expect("pool").clone();
        eventually("replication", || {
            let pool = pool.clone();
            async move {
                pool.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|r| r.try_get::<i64>("", "n").ok())
                    == Some(n)
            }
        })
        .await;
    }
}

/// Three products in two categories, a customer and an order of two lines.
async fn seed(db: &Db) -> (Vec<product::Model>, customer::Model, order::Model) {
    let mut products = Vec::new();
    for (name, price) in [("kettle", 2500), ("teapot", 1800), ("mug", 600)] {
        products.push(
            product::ActiveModel {
                name: Set(name.into()),
                price_cents: Set(price),
                stock: Set(10),
                ..Default::default()
            }
            .insert(db)
            .await
            .expect("insert product"),
        );
    }
    let kitchen = category::ActiveModel {
        name: Set("kitchen".into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("category");
    let tea = category::ActiveModel {
        name: Set("tea".into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("category");
    for (p, c) in [(0, &kitchen), (1, &kitchen), (1, &tea), (2, &tea)] {
        product_category::ActiveModel {
            product_id: Set(products[p].id),
            category_id: Set(c.id),
        }
        .insert(db)
        .await
        .expect("link");
    }
    let ada = customer::ActiveModel {
        email: Set("ada@example.com".into()),
        name: Set("Ada".into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("customer");
    let order = order::ActiveModel {
        customer_id: Set(ada.id),
        status: Set("open".into()),
        total_cents: Set(4300),
        delivery: Set(serde_json::json!({"city": "Lyon", "express": true})),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("order");
    for (p, q) in [(0, 1), (1, 1)] {
        order_item::ActiveModel {
            order_id: Set(order.id),
            product_id: Set(products[p].id),
            quantity: Set(q),
        }
        .insert(db)
        .await
        .expect("item");
    }
    // replay is in commit order: the last row written is there, so is the rest
    replicated(db, "SELECT count(*) AS n FROM order_item", 2).await;
    (products, ada, order)
}

/// Runs `f` in a fresh scope and says where its last read went and what the
/// cache did.
async fn observed<T>(
    f: impl std::future::Future<Output = T>,
) -> (T, Option<Route>, Option<CacheOutcome>) {
    let scope = Scope::new();
    let out = scope.run(Box::pin(f)).await;
    (out, scope.state().last_route(), scope.state().last_cache())
}

fn on_replica(r: &Option<Route>) -> bool {
    matches!(r, Some(Route::Replica(_)))
}

/// A partial model: a product's name and price.
#[derive(Debug, Clone, PartialEq, sea_orm::DerivePartialModel, Serialize, Deserialize)]
#[sea_orm(entity = "Product")]
struct Label {
    id: i64,
    name: String,
    price_cents: i64,
}

/// A custom model for a raw statement.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize, Deserialize)]
struct Revenue {
    customer_id: i64,
    cents: i64,
}

// ---------------------------------------------------------------- tests

/// Every select kind: on a replica when asked, cached when asked (a second
/// read is a hit), and a write empties what it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_select_kind_is_routed_and_cached() {
    let Some(db) = shop_db("kinds").await else {
        return;
    };
    let (products, ada, order) = seed(&db).await;
    let kettle = products[0].id;

    // Check each read twice: the first on a replica (a miss), the second a hit.
    macro_rules! kind {
        ($what:literal, $read:expr, $check:expr) => {{
            let (first, route, cache) = observed(async { $read.await }).await;
            let first = first.expect($what);
            assert!(on_replica(&route), "{}: {route:?}", $what);
            assert_eq!(cache, Some(CacheOutcome::Miss), "{}", $what);
            let (again, _, cache) = observed(async { $read.await }).await;
            assert_eq!(again.expect($what), first, "{}", $what);
            assert_eq!(
                cache,
                Some(CacheOutcome::HitL1),
                "{}: the second read",
                $what
            );
            #[allow(clippy::redundant_closure_call)]
            ($check)(first);
        }};
    }

    kind!(
        "Select::all",
        Product::find()
            .order_by_asc(product::Column::Id)
            .using_replica()
            .cached()
            .all(&db),
        |v: Vec<product::Model>| assert_eq!(v.len(), 3)
    );
    kind!(
        "Select::one",
        Product::find_by_id(kettle)
            .using_replica()
            .cached()
            .one(&db),
        |v: Option<product::Model>| assert_eq!(v.map(|p| p.name).as_deref(), Some("kettle"))
    );
    kind!(
        "Select::require_one",
        Customer::find_by_id(ada.id)
            .using_replica()
            .cached()
            .require_one(&db),
        |v: customer::Model| assert_eq!(v.name, "Ada")
    );
    kind!(
        "Select::count",
        Product::find()
            .filter(product::Column::PriceCents.gt(1000))
            .using_replica()
            .cached()
            .count(&db),
        |n: u64| assert_eq!(n, 2)
    );
    kind!(
        "Select::exists",
        Order::find()
            .filter(order::Column::Status.eq("open"))
            .using_replica()
            .cached()
            .exists(&db),
        |b: bool| assert!(b)
    );
    kind!(
        "SelectTwo (find_also_related)",
        Order::find()
            .find_also_related(Customer)
            .using_replica()
            .cached()
            .all(&db),
        |v: Vec<(order::Model, Option<customer::Model>)>| {
            assert_eq!(v[0].1.as_ref().map(|c| c.id), Some(ada.id));
        }
    );
    kind!(
        "SelectTwoMany (find_with_related)",
        Order::find()
            .find_with_related(OrderItem)
            .using_replica()
            .cached()
            .all(&db),
        |v: Vec<(order::Model, Vec<order_item::Model>)>| assert_eq!(v[0].1.len(), 2)
    );
    kind!(
        "many-to-many (find_with_related through the link)",
        Product::find()
            .find_with_related(Category)
            .order_by_asc(product::Column::Id)
            .using_replica()
            .cached()
            .all(&db),
        |v: Vec<(product::Model, Vec<category::Model>)>| {
            assert_eq!(
                v.iter().map(|(_, c)| c.len()).collect::<Vec<_>>(),
                [1, 2, 1]
            );
        }
    );
    kind!(
        "into_partial_model",
        Product::find()
            .order_by_asc(product::Column::Id)
            .using_replica()
            .into_partial_model::<Label>()
            .cached()
            .all(&db),
        |v: Vec<Label>| assert_eq!(v[2].name, "mug")
    );
    kind!(
        "into_model",
        Order::find()
            .select_only()
            .column(order::Column::CustomerId)
            .column_as(order::Column::TotalCents, "cents")
            .using_replica()
            .into_model::<Revenue>()
            .cached()
            .all(&db),
        |v: Vec<Revenue>| assert_eq!(
            v,
            [Revenue {
                customer_id: ada.id,
                cents: 4300
            }]
        )
    );
    kind!(
        "into_tuple",
        Product::find()
            .select_only()
            .column(product::Column::Name)
            .column(product::Column::Stock)
            .order_by_asc(product::Column::Id)
            .using_replica()
            .into_tuple::<(String, i32)>()
            .cached()
            .all(&db),
        |v: Vec<(String, i32)>| assert_eq!(v[0], ("kettle".to_owned(), 10))
    );
    kind!(
        "into_json (the JSON column)",
        Order::find_by_id(order.id)
            .using_replica()
            .into_json()
            .cached()
            .one(&db),
        |v: Option<serde_json::Value>| assert_eq!(
            v.expect("the order")["delivery"]["city"],
            "Lyon"
        )
    );
    kind!(
        "a raw statement",
        RawSelect::<Revenue>::new(Statement::from_sql_and_values(
            DbBackend::Postgres,
            r#"SELECT customer_id, SUM(total_cents)::int8 AS cents FROM "order" WHERE status = $1 GROUP BY customer_id"#,
            ["open".into()],
        ))
        .using_replica()
        .cached()
        .all(&db),
        |v: Vec<Revenue>| assert_eq!(v.len(), 1)
    );

    // A write empties what it changes: the kettle's price.
    product::ActiveModel {
        id: Set(kettle),
        price_cents: Set(2900),
        ..Default::default()
    }
    .update(&db)
    .await
    .expect("update");
    replicated(
        &db,
        "SELECT count(*) AS n FROM product WHERE price_cents = 2900",
        1,
    )
    .await;
    let (after, _, cache) = observed(async {
        Product::find_by_id(kettle)
            .using_replica()
            .cached()
            .one(&db)
            .await
    })
    .await;
    assert_eq!(after.expect("read").map(|p| p.price_cents), Some(2900));
    assert_ne!(
        cache,
        Some(CacheOutcome::HitL1),
        "the write emptied the entry"
    );
    // ... and not what it cannot change: the customer.
    let (_, _, cache) = observed(async {
        Customer::find_by_id(ada.id)
            .using_replica()
            .cached()
            .require_one(&db)
            .await
    })
    .await;
    assert_eq!(
        cache,
        Some(CacheOutcome::HitL1),
        "a product write kept the customer"
    );
}

/// Unknown aliases are errors; the explicit primary is the primary; a plain
/// SeaORM call is routed by the router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_and_plain_calls_are_routed() {
    let Some(db) = shop_db("alias").await else {
        return;
    };
    seed(&db).await;
    let (r, _, _) = observed(async { Product::find().using("typo").all(&db).await }).await;
    let e = r.expect_err("an unknown alias");
    assert!(e.to_string().contains("typo"), "{e}");
    let (r, route, _) = observed(async { Product::find().using_primary().all(&db).await }).await;
    assert_eq!(r.expect("primary").len(), 3);
    assert_eq!(route, Some(Route::Primary));
    let (r, route, _) = observed(async { Product::find().all(&db).await }).await;
    assert_eq!(r.expect("plain").len(), 3);
    assert!(on_replica(&route), "{route:?}");
    let r = db
        .with_alias("typo", |db| async move { Product::find().all(&db).await })
        .await;
    assert!(r.is_err(), "a block on an unknown alias fails its reads");
}

/// Paginate (page and count on one replica), and a cursor in a
/// `with_replica` block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginate_and_cursor() {
    let Some(db) = shop_db("pages").await else {
        return;
    };
    seed(&db).await;
    // the paginator belongs to the scope current when it is made
    let scope = Scope::new();
    let (first, second, n) = scope
        .run(async {
            let pages = Product::find()
                .order_by_asc(product::Column::Id)
                .using_replica()
                .cached()
                .paginate(&db, 2);
            (
                pages.fetch_page(0).await.expect("page 0"),
                pages.fetch_page(1).await.expect("page 1"),
                pages.num_pages().await.expect("pages"),
            )
        })
        .await;
    assert_eq!((first.len(), second.len(), n), (2, 1, 2));
    assert!(on_replica(&scope.state().last_route()));

    let before = db.routing_stats();
    let page = db
        .with_replica(|db| async move {
            let mut c = Product::find().cursor_by(product::Column::Id);
            c.after(first[0].id).first(5);
            c.all(&db).await
        })
        .await
        .expect("cursor");
    assert_eq!(page.len(), 2);
    let after = db.routing_stats();
    assert_eq!(
        after.primary_reads, before.primary_reads,
        "the cursor read a replica"
    );
    assert!(after.replica_reads > before.replica_reads);
}

/// `.stream(&db)` reads a replica; a loader's queries too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_loader_read_a_replica() {
    let Some(db) = shop_db("stream").await else {
        return;
    };
    seed(&db).await;
    let before = db.routing_stats();
    let names: Vec<String> = {
        let stream = Product::find()
            .order_by_asc(product::Column::Id)
            .stream(&db)
            .await
            .expect("stream");
        stream.map_ok(|p| p.name).try_collect().await.expect("rows")
    };
    assert_eq!(names, ["kettle", "teapot", "mug"]);
    // StreamTrait on Db directly, with a raw statement.
    let raw = db
        .stream_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id FROM product",
        ))
        .await
        .expect("stream_raw");
    let rows: Vec<_> = raw.try_collect().await.expect("raw rows");
    assert_eq!(rows.len(), 3);

    let products = db
        .with_replica(|db| async move {
            Product::find()
                .order_by_asc(product::Column::Id)
                .all(&db)
                .await
        })
        .await
        .expect("products");
    let categories = products.load_many(Category, &db).await.expect("load_many");
    assert_eq!(
        categories.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 2, 1]
    );
    let items = Order::find()
        .all(&db)
        .await
        .expect("orders")
        .load_many(OrderItem, &db)
        .await
        .expect("items");
    assert_eq!(items[0].len(), 2);
    let after = db.routing_stats();
    assert_eq!(
        after.primary_reads, before.primary_reads,
        "nothing read the primary"
    );
    assert!(after.replica_reads >= before.replica_reads + 6);
}

/// A transaction: on the primary, its cached reads read the transaction
/// (they see its own writes), and its commit empties what it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_reads_itself_and_invalidates_at_commit() {
    let Some(db) = shop_db("txn").await else {
        return;
    };
    let (products, ada, _) = seed(&db).await;
    let listing = || {
        Order::find()
            .filter(order::Column::CustomerId.eq(ada.id))
            .using_replica()
            .cached()
            .count(&db)
    };
    let (n, _, _) = observed(listing()).await;
    assert_eq!(n.expect("count"), 1);

    let txn = db.begin().await.expect("begin");
    let placed = order::ActiveModel {
        customer_id: Set(ada.id),
        status: Set("paid".into()),
        total_cents: Set(600),
        delivery: Set(serde_json::json!({"city": "Nantes"})),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .expect("insert in txn");
    order_item::ActiveModel {
        order_id: Set(placed.id),
        product_id: Set(products[2].id),
        quantity: Set(1),
    }
    .insert(&txn)
    .await
    .expect("item in txn");
    let inside = Order::find()
        .filter(order::Column::CustomerId.eq(ada.id))
        .using_replica()
        .cached()
        .count(&txn)
        .await
        .expect("count in txn");
    assert_eq!(
        inside, 2,
        "a cached read in a transaction reads the transaction"
    );
    txn.commit().await.expect("commit");

    // The commit emptied the count (on every instance); a read in a scope
    // after the write sees it on the primary or a caught-up replica.
    let (n, _, cache) = observed(async {
        db.with_primary(|db| async move {
            Order::find()
                .filter(order::Column::CustomerId.eq(ada.id))
                .using_replica()
                .cached()
                .count(&db)
                .await
        })
        .await
    })
    .await;
    assert_eq!(n.expect("count"), 2);
    assert_ne!(cache, Some(CacheOutcome::HitL1));

    // transaction_async: a failed callback rolls back.
    let r: Result<(), sea_orm::TransactionError<DbErr>> = db
        .transaction_async(async |txn| {
            customer::ActiveModel {
                email: Set("bob@example.com".into()),
                name: Set("Bob".into()),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            Err(DbErr::Custom("changed my mind".into()))
        })
        .await;
    assert!(r.is_err());
    let bob = db
        .with_primary(|db| async move {
            Customer::find()
                .filter(customer::Column::Email.eq("bob@example.com"))
                .one(&db)
                .await
        })
        .await
        .expect("read");
    assert!(bob.is_none(), "rolled back");
}

/// `prevent_writes` and a read-only handle refuse a write before it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_can_be_forbidden() {
    let Some(db) = shop_db("nowrite").await else {
        return;
    };
    seed(&db).await;
    let write = |db: Db| async move {
        product::ActiveModel {
            name: Set("spoon".into()),
            price_cents: Set(100),
            stock: Set(1),
            ..Default::default()
        }
        .insert(&db)
        .await
    };
    let (r, reads) = db
        .prevent_writes(async {
            (
                write(db.clone()).await,
                Product::find().all(&db).await.map(|v| v.len()),
            )
        })
        .await;
    let e = r.expect_err("a write in prevent_writes");
    assert!(e.to_string().contains("refused"), "{e}");
    assert_eq!(reads.expect("reads still work"), 3);
    let e = write(db.read_only()).await.expect_err("a read-only handle");
    assert!(e.to_string().contains("refused"), "{e}");
    let txn = db
        .read_only()
        .begin_read_only()
        .await
        .expect("read-only txn");
    assert_eq!(Product::find().count(&txn).await.expect("count"), 3);
    txn.commit().await.expect("commit");
    let n = db
        .with_primary(|db| async move { Product::find().count(&db).await })
        .await
        .expect("count");
    assert_eq!(n, 3, "nothing was written");
}

/// A task spawned by a request carries its scope: after the request wrote,
/// the task's reads go to the primary and see the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_task_carries_the_scope() {
    let Some(db) = shop_db("spawn").await else {
        return;
    };
    seed(&db).await;
    let scope = Scope::new();
    let (id, route) = scope
        .run(async {
            let p = product::ActiveModel {
                name: Set("spoon".into()),
                price_cents: Set(100),
                stock: Set(1),
                ..Default::default()
            }
            .insert(&db)
            .await
            .expect("insert");
            let carried = Scope::current().expect("in a scope");
            let db2 = db.clone();
            tokio::spawn(async move {
                carried
                    .run(async {
                        let seen = Product::find_by_id(p.id)
                            .using_replica()
                            .one(&db2)
                            .await
                            .expect("read");
                        (seen.map(|s| s.id), carried.state().last_route())
                    })
                    .await
            })
            .await
            .expect("task")
        })
        .await;
    assert!(id.is_some(), "the task saw the request's write");
    assert_eq!(route, Some(Route::Primary), "sticky in the spawned task");
}

/// The shop's DDL for an identity key is plain SeaORM's: depending on
/// Seaway turns on no sea-orm feature that changes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_key_ddl_is_plain_seaorms() {
    use sea_orm::sea_query::PostgresQueryBuilder;
    let ddl = Schema::new(DbBackend::Postgres)
        .create_table_from_entity(Customer)
        .to_string(PostgresQueryBuilder);
    assert!(
        ddl.contains(r#""id" bigint GENERATED BY DEFAULT AS IDENTITY"#),
        "SeaORM's identity column, not serial: {ddl}"
    );
    let Some(db) = shop_db("ddl").await else {
        return;
    };
    let row = db
        .primary()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT is_identity FROM information_schema.columns WHERE table_name = 'customer' AND column_name = 'id'",
        ))
        .await
        .expect("catalog")
        .expect("the column");
    assert_eq!(
        row.try_get::<String>("", "is_identity").expect("col"),
        "YES"
    );
}

/// Migrations through `Db` refuse a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_refuse_a_replica() {
    let Some(db) = shop_db("migrate").await else {
        return;
    };
    // A Db whose primary is a replica: the migration is refused before it runs.
    let c = cluster().expect("cluster");
    let name = db
        .primary()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_database() AS d",
        ))
        .await
        .expect("name")
        .expect("row")
        .try_get::<String>("", "d")
        .expect("d");
    let wrong = Db::connect(
        Config::builder()
            .database_url(with_db(&c.replicas[0], &name))
            .cache_ttl(Duration::ZERO)
            .build(),
    )
    .await
    .expect("connect to a replica as primary");
    let e = Migrator::up(&wrong, None).await.expect_err("refused");
    assert!(!e.to_string().is_empty());
    let e = wrong
        .migrate(async |p| Migrator::up(p, None).await)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("replica"), "{e}");
}

/// A unit test without a server: `MockDatabase` behind `Db`, reads to the
/// replica, writes to the primary.
#[tokio::test]
async fn routing_on_mock_databases() {
    use sea_orm::{MockDatabase, MockExecResult};
    let kettle = product::Model {
        id: 1,
        name: "kettle".into(),
        price_cents: 2500,
        stock: 10,
    };
    let primary = MockDatabase::new(DbBackend::Postgres)
        .append_query_results([vec![kettle.clone()]])
        .append_exec_results([MockExecResult {
            last_insert_id: 1,
            rows_affected: 1,
        }])
        .into_connection();
    let replica = MockDatabase::new(DbBackend::Postgres)
        .append_query_results([vec![kettle.clone()], vec![kettle.clone()]])
        .into_connection();
    let config = Config::builder()
        .database_url("postgres://mock/shop")
        .introspect(false)
        .build();
    let db = Db::from_connections(
        config,
        ReadWriteRouter,
        primary.clone(),
        vec![replica.clone()],
    )
    .await
    .expect("a Db over mocks");
    let found = Product::find_by_id(1).one(&db).await.expect("read");
    assert_eq!(found, Some(kettle.clone()));
    let explicit = Product::find_by_id(1)
        .using_replica()
        .one(&db)
        .await
        .expect("explicit read");
    assert_eq!(explicit, Some(kettle.clone()));
    product::ActiveModel {
        name: Set("kettle".into()),
        price_cents: Set(2500),
        stock: Set(10),
        ..Default::default()
    }
    .insert(&db)
    .await
    .expect("write");
    let on_replica: Vec<String> = replica
        .into_transaction_log()
        .iter()
        .map(|t| format!("{t:?}"))
        .collect();
    let on_primary: Vec<String> = primary
        .into_transaction_log()
        .iter()
        .map(|t| format!("{t:?}"))
        .collect();
    assert_eq!(
        on_replica.len(),
        2,
        "both reads on the replica: {on_replica:?}"
    );
    assert!(on_replica.iter().all(|s| s.contains("SELECT")));
    assert!(
        on_primary.iter().any(|s| s.contains("INSERT INTO")),
        "the write on the primary: {on_primary:?}"
    );
    assert!(
        !on_primary
            .iter()
            .any(|s| s.contains(r#"FROM \"product\" WHERE"#))
    );
    let stats = db.routing_stats();
    assert_eq!((stats.replica_reads, stats.writes), (2, 1));
}

/// The transaction trait is the library's own: `commit` needs no SeaORM
/// trait in scope (compiles = holds), and `TransactionTrait` still works.
#[allow(dead_code)]
async fn commit_needs_no_trait(db: &Db) -> Result<(), DbErr> {
    let txn = TransactionTrait::begin(db).await?;
    txn.commit().await
}

#[allow(dead_code)]
fn streams_are_stream_trait(db: Db) -> impl StreamTrait {
    db
}

/// `SchemaBuilder::sync(&db)` makes the schema through `Db` (on the
/// primary), a second sync changes nothing, and the tables serve routed,
/// cached reads at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_sync_through_db() {
    let Some(db) = shop_db_made("sync", true).await else {
        return;
    };
    let (products, _, _) = seed(&db).await;
    sea_orm::Schema::new(DbBackend::Postgres)
        .builder()
        .register(Customer)
        .register(Product)
        .sync(&db)
        .await
        .expect("a second sync");
    let (first, route, cache) = observed(async {
        Product::find_by_id(products[0].id)
            .using_replica()
            .cached()
            .one(&db)
            .await
    })
    .await;
    assert_eq!(
        first.expect("read").map(|p| p.name).as_deref(),
        Some("kettle")
    );
    assert!(on_replica(&route), "{route:?}");
    assert_eq!(cache, Some(CacheOutcome::Miss));
}
