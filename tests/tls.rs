//! TLS and passwords, on the cluster's TLS twins (scripts/cluster.sh makes a
//! CA, runs the PostgreSQL servers with ssl=on and a TLS-only Redis with a
//! password): routing, the cache and cross-instance invalidation over
//! `verify-full` and `rediss://` with a private CA; client certificates
//! (PostgreSQL `cert` authentication, Redis checking what clients present)
//! and a restricted Redis ACL user; a wrong host name, a wrong password, a
//! certificate from another CA and a missing CA are refused with errors
//! that say what failed and never show the password.

use entity::prelude::*;
use sea_orm::{ConnectionTrait, Database, EntityTrait, Statement};
use seaway::prelude::*;
use seaway::{CacheOutcome, Config, Db, Route, Scope};
use seaway_tests::{cluster, insert_profile, insert_story, wait_for};
use std::time::Duration;

const PASSWORD: &str = "seaway-tls-test-only";

/// The TLS URLs of the cluster (primary, replicas, Redis, CA), or `None`
/// without the cluster (a failure under `SEAWAY_REQUIRE_CLUSTER`).
fn tls() -> Option<(String, Vec<String>, String, String)> {
    cluster()?;
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let found = (
        get("SEAWAY_TLS_DATABASE_URL"),
        get("SEAWAY_TLS_READ_REPLICA_URLS"),
        get("SEAWAY_TLS_REDIS_URL"),
        get("SEAWAY_TLS_CA"),
    );
    match found {
        (Some(p), Some(r), Some(redis), Some(ca)) => {
            Some((p, r.split(',').map(str::to_owned).collect(), redis, ca))
        }
        _ => {
            assert!(
                std::env::var("SEAWAY_REQUIRE_CLUSTER").is_err(),
                "the cluster's TLS servers are required: eval \"$(scripts/cluster.sh env)\""
            );
            println!("SKIPPED: needs the cluster's TLS servers");
            None
        }
    }
}

/// `url` on database `name`.
fn on_db(url: &str, name: &str) -> String {
    url.replacen("/postgres?", &format!("/{name}?"), 1)
}

/// A fresh database, migrated, on every replica; its TLS URLs.
async fn fresh(primary: &str, replicas: &[String]) -> (String, Vec<String>) {
    let c = cluster().expect("cluster");
    let t = c.fresh_db("tls").await;
    (
        on_db(primary, &t.name),
        replicas.iter().map(|r| on_db(r, &t.name)).collect(),
    )
}

/// Story `id`'s title from a replica through the cache, where it came from
/// and how.
async fn read(db: &Db, id: i64) -> (Option<String>, Option<Route>, Option<CacheOutcome>) {
    let scope = Scope::new();
    let title = scope
        .run(async { Story::find_by_id(id).using_replica().cached().one(db).await })
        .await
        .expect("read")
        .map(|m| m.title);
    (
        title,
        scope.state().last_route(),
        scope.state().last_cache(),
    )
}

/// B (no L1) reads A's entry of story `id` from Redis, and once B's bus is
/// up, A's write of the story reaches B.
async fn shared_and_invalidated(a: &Db, b: &Db, id: i64) {
    wait_for(Duration::from_secs(5), || async {
        read(b, id).await.2 == Some(CacheOutcome::HitL2)
    })
    .await
    .expect("B reads A's entry from Redis");
    wait_for(Duration::from_secs(5), || async {
        b.health().await.cache.bus_healthy
    })
    .await
    .expect("B's bus is up");
    a.execute_raw(Statement::from_sql_and_values(
        a.get_database_backend(),
        "UPDATE stories SET title = $1 WHERE id = $2",
        ["changed".into(), id.into()],
    ))
    .await
    .expect("update");
    wait_for(Duration::from_secs(5), || async {
        read(b, id).await.0.as_deref() == Some("changed")
    })
    .await
    .expect("B sees A's write");
}

/// Routing, the cache (L1, L2 over TLS) and cross-instance invalidation (the
/// bus over TLS) with every server reached by `verify-full` against the
/// cluster's CA, and every session of the TLS login encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_and_the_cache_work_over_verified_tls() {
    let Some((primary, replicas, redis, ca)) = tls() else {
        return;
    };
    let c = cluster().expect("cluster");
    let _g = c.shared().await;
    let (primary, replicas) = fresh(&primary, &replicas).await;
    let config = |l1: u64| {
        let mut b = Config::builder()
            .database_url(&primary)
            .redis_url(&redis)
            .redis_ca_file(&ca)
            .key_prefix(format!("tls-test:{:08x}", rand::random::<u32>()))
            .health_check_interval(Duration::from_millis(100))
            .l1_max_bytes(l1)
            .pool(1, 4);
        for r in &replicas {
            b = b.replica(r);
        }
        b.build()
    };
    let cfg_a = config(64 << 20);
    let prefix = cfg_a.key_prefix.clone();
    let a = Db::connect(cfg_a).await.expect("A over TLS");
    let mut cfg_b = config(0);
    cfg_b.key_prefix = prefix;
    let b = Db::connect(cfg_b).await.expect("B over TLS");

    let author = insert_profile(&a, "tls-author").await;
    let id = insert_story(&a, author, "over tls", true).await;
    for r in 0..replicas.len() {
        let pool = a
            .replica_pool(&format!("replica{}", r + 1))
            .expect("pool")
            .clone();
        wait_for(Duration::from_secs(5), || {
            let pool = pool.clone();
            async move {
                Story::find_by_id(id)
                    .one(&pool)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
            }
        })
        .await
        .expect("replicated over TLS");
    }
    let (title, route, cache) = read(&a, id).await;
    assert_eq!(title.as_deref(), Some("over tls"));
    assert!(matches!(route, Some(Route::Replica(_))), "{route:?}");
    assert_eq!(cache, Some(CacheOutcome::Miss));
    assert_eq!(read(&a, id).await.2, Some(CacheOutcome::HitL1));
    shared_and_invalidated(&a, &b, id).await;

    // every session of the TLS login is encrypted
    let admin = Database::connect(&c.primary).await.expect("admin");
    let plain = admin
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.usename = 'seaway_tls' AND NOT s.ssl",
        ))
        .await
        .expect("pg_stat_ssl")
        .expect("row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert_eq!(plain, 0, "unencrypted sessions of the TLS login");
    let health = serde_json::to_string(&a.health().await).expect("health");
    assert!(
        !health.contains(PASSWORD),
        "no password in health: {health}"
    );
}

/// `verify-full` to an address the certificate does not name (127.0.0.1;
/// it names localhost) is refused, and the error says so without the
/// password.
#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused_clearly() {
    let Some((primary, _, _, _)) = tls() else {
        return;
    };
    let wrong = primary.replacen("@localhost:", "@127.0.0.1:", 1);
    let err = Db::connect(Config::builder().database_url(&wrong).build())
        .await
        .expect_err("a certificate for localhost, not 127.0.0.1");
    let msg = err.to_string();
    println!("wrong host name: {msg}");
    assert!(!msg.contains(PASSWORD), "the password leaked: {msg}");
    let lower = msg.to_lowercase();
    assert!(
        lower.contains("certificate") || lower.contains("name"),
        "the error says what failed: {msg}"
    );
}

/// A wrong password to PostgreSQL and to Redis, and a CA file that is not
/// there: refused, named, and the password never shown.
#[tokio::test]
async fn wrong_passwords_and_a_missing_ca_are_refused_without_showing_secrets() {
    let Some((primary, _, redis, ca)) = tls() else {
        return;
    };
    let bad_pw = "not-the-password-x9";
    let err = Db::connect(
        Config::builder()
            .database_url(primary.replacen(PASSWORD, bad_pw, 1))
            .build(),
    )
    .await
    .expect_err("a wrong password");
    let msg = err.to_string();
    println!("wrong PostgreSQL password: {msg}");
    assert!(!msg.contains(bad_pw), "{msg}");
    assert!(
        msg.to_lowercase().contains("password") || msg.contains("28P01"),
        "{msg}"
    );

    let err = Db::connect(
        Config::builder()
            .database_url(&primary)
            .redis_url(&redis)
            .redis_ca_file("/nonexistent/ca.pem")
            .build(),
    )
    .await
    .expect_err("a missing CA file");
    assert!(err.to_string().contains("SEAWAY_REDIS_CA_FILE"), "{err}");

    // Redis with a wrong password: the service runs on L1, says so, and no
    // figure shows the password
    let db = Db::connect(
        Config::builder()
            .database_url(&primary)
            .redis_url(redis.replacen(PASSWORD, bad_pw, 1))
            .redis_ca_file(&ca)
            .build(),
    )
    .await
    .expect("Redis is optional at start");
    let _ = Story::find().using_replica().cached().all(&db).await;
    let health = serde_json::to_string(&db.health().await).expect("health");
    let stats = serde_json::to_string(&db.cache_stats().await).expect("stats");
    assert!(
        !health.contains(bad_pw) && !stats.contains(bad_pw),
        "{health} {stats}"
    );
    assert!(
        !db.health().await.cache.l2_healthy,
        "L2 is not healthy: {health}"
    );
    let debug = format!("{:?} {:?}", db, Config::builder().redis_url(&redis).build());
    assert!(!debug.contains(PASSWORD), "{debug}");
}

/// Mutual TLS and an ACL user: a PostgreSQL login that only a client
/// certificate from the CA opens (`cert` authentication, on the primary and
/// every replica), and the TLS Redis, which checks any certificate a client
/// presents, reached as an ACL user restricted to its own keys and channels
/// with no dangerous command. Routing, L2 and the bus work; with no
/// certificate, and with a self-signed one of the same name, PostgreSQL
/// refuses and says why, and Redis is refused (the service runs on L1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_an_acl_user_open_postgresql_and_redis() {
    let Some((primary, replicas, redis, ca)) = tls() else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} (scripts/cluster.sh env)"));
    let user = env("SEAWAY_TLS_CERT_USER");
    let (cert, key) = (env("SEAWAY_TLS_CLIENT_CERT"), env("SEAWAY_TLS_CLIENT_KEY"));
    let (rogue_cert, rogue_key) = (env("SEAWAY_TLS_ROGUE_CERT"), env("SEAWAY_TLS_ROGUE_KEY"));
    let c = cluster().expect("cluster");
    let _g = c.shared().await;
    let (primary, replicas) = fresh(&primary, &replicas).await;
    // the certificate login in place of the password one
    let login = |url: &str, client: Option<(&str, &str)>| {
        let url = url.replacen(&format!("seaway_tls:{PASSWORD}@"), &format!("{user}@"), 1);
        match client {
            Some((cert, key)) => format!("{url}&sslcert={cert}&sslkey={key}"),
            None => url,
        }
    };
    let redis_cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert", &ca, "-h", "localhost", "-p"])
            .arg(
                redis
                    .rsplit(':')
                    .next()
                    .expect("port")
                    .trim_end_matches('/'),
            )
            .args(["--user", "default", "--pass", PASSWORD, "--no-auth-warning"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let prefix = format!("tls-acl:{:08x}", rand::random::<u32>());
    let acl_password = "acl-only-pass-k4";
    let acl = redis_cli(&[
        "ACL",
        "SETUSER",
        "seaway_acl",
        "reset",
        "on",
        &format!(">{acl_password}"),
        &format!("~{prefix}:*"),
        &format!("~{{{prefix}:*"),
        &format!("&{{{prefix}:*"),
        "+@all",
        "-@dangerous",
        "+info",
    ]);
    assert_eq!(acl, "OK", "ACL SETUSER");
    let acl_redis = redis.replacen(
        &format!("default:{PASSWORD}@"),
        &format!("seaway_acl:{acl_password}@"),
        1,
    );
    // the PostgreSQL servers get the CA's certificate, Redis `redis_cert`
    let config = |l1: u64, redis_cert: (&str, &str)| {
        let client = (cert.as_str(), key.as_str());
        let mut b = Config::builder()
            .database_url(login(&primary, Some(client)))
            .redis_url(&acl_redis)
            .redis_ca_file(&ca)
            .redis_client_cert(redis_cert.0, redis_cert.1)
            .key_prefix(&prefix)
            .health_check_interval(Duration::from_millis(100))
            .l1_max_bytes(l1)
            .pool(1, 4);
        for r in &replicas {
            b = b.replica(login(r, Some(client)));
        }
        b.build()
    };
    let a = Db::connect(config(64 << 20, (&cert, &key)))
        .await
        .expect("A by certificate");
    let b = Db::connect(config(0, (&cert, &key)))
        .await
        .expect("B by certificate");
    let author = insert_profile(&a, "cert-author").await;
    let id = insert_story(&a, author, "by certificate", true).await;
    wait_for(Duration::from_secs(5), || async {
        read(&a, id).await.0.as_deref() == Some("by certificate")
    })
    .await
    .expect("replicated, read from a replica by certificate");
    // (a fill is refused while the replica that answered is behind the
    // insert's position: then the next read loads again)
    wait_for(Duration::from_secs(5), || async {
        read(&a, id).await.2 == Some(CacheOutcome::HitL1)
    })
    .await
    .expect("a replica's answer cached in L1");
    shared_and_invalidated(&a, &b, id).await;

    // no certificate, or one the CA did not sign: PostgreSQL says why
    for (what, client) in [
        ("no certificate", None),
        (
            "a self-signed certificate",
            Some((rogue_cert.as_str(), rogue_key.as_str())),
        ),
    ] {
        let err = Db::connect(
            Config::builder()
                .database_url(login(&primary, client))
                .build(),
        )
        .await
        .expect_err(what);
        let msg = err.to_string();
        println!("PostgreSQL with {what}: {msg}");
        assert!(msg.contains("client certificate"), "{what}: {msg}");
    }
    // Redis refuses the self-signed certificate: L2 stays down, reads work
    let rogue = Db::connect(config(0, (&rogue_cert, &rogue_key)))
        .await
        .expect("Redis is optional at start");
    assert_eq!(read(&rogue, id).await.0.as_deref(), Some("changed"));
    let h = rogue.health().await;
    println!("Redis with a self-signed client certificate: {:?}", h.cache);
    assert!(
        !h.cache.l2_healthy,
        "Redis took a certificate its CA did not sign"
    );
    redis_cli(&["ACL", "DELUSER", "seaway_acl"]);
}
