//! The service against API.md: every endpoint's shapes, statuses, headers,
//! ordering and counts, on the embedded SQLite default and on the PostgreSQL
//! primary + replicas + Redis; a table of bad inputs that change nothing; and
//! read-after-write through HTTP under replication lag.

use app::{AppConfig, AppState};
use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use rstest::rstest;
use sea_orm::EntityTrait;
use seaway::Db;
use seaway_tests::cluster;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;
use tower::ServiceExt;

/// A client of one service instance that, like a careful client, sends back
/// the consistency token of its last write.
struct Client {
    router: Router,
    db: Db,
    token: Mutex<Option<String>>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    fn new(state: AppState) -> Self {
        Self {
            db: state.db.clone(),
            router: app::router(state),
            token: Mutex::new(None),
        }
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
        token: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(t) = token {
            req = req.header("x-consistency-token", t);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if let Some(t) = headers
            .get("x-consistency-token")
            .and_then(|v| v.to_str().ok())
        {
            *self.token.lock().expect("lock") = Some(t.to_owned());
        }
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            panic!("{status} for {path}: {body}");
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let token = self.token.lock().expect("lock").clone();
        let (b, ct) = match body {
            Some(v) => (Body::from(v.to_string()), Some("application/json")),
            None => (Body::empty(), None),
        };
        self.raw(method, path, b, ct, token.as_deref()).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

fn ids(list: &Value) -> Vec<i64> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

/// A new profile named `username`, through the service: its id.
async fn new_profile(c: &Client, username: &str) -> i64 {
    let r = c
        .post(
            "/profiles",
            json!({"username": username, "display_name": "P"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_i64().expect("id")
}

/// A new published story by `author`, through the service: its id.
async fn new_story(c: &Client, author: i64, title: &str) -> i64 {
    let r = c
        .post(
            "/stories",
            json!({"author_id": author, "title": title, "body": "b", "published": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_i64().expect("id")
}

async fn sqlite_client() -> Client {
    let dir = std::env::temp_dir().join(format!("seaway-http-{:x}", rand::random::<u64>()));
    let cfg = AppConfig {
        seaway: seaway::Config::builder()
            .database_url(format!("sqlite://{}/s.db?mode=rwc", dir.display()))
            .sqlite_file_defaults(true)
            .build(),
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
    };
    Client::new(app::connect(&cfg).await.expect("connect"))
}

async fn pg_client(t: &seaway_tests::TestDb, max_lag: Duration) -> Client {
    let cfg = AppConfig {
        seaway: t.config().max_replica_lag(max_lag).build(),
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
    };
    Client::new(app::connect(&cfg).await.expect("connect"))
}

const PROFILE_KEYS: [&str; 6] = [
    "bio",
    "created_at",
    "display_name",
    "id",
    "updated_at",
    "username",
];
const STORY_KEYS: [&str; 11] = [
    "author_id",
    "body",
    "created_at",
    "featured",
    "genre",
    "id",
    "published",
    "published_at",
    "title",
    "updated_at",
    "view_count",
];
const STATS_KEYS: [&str; 4] = [
    "follower_count",
    "following_count",
    "published_story_count",
    "story_count",
];

async fn contract(c: &Client) {
    // profiles
    let ann = c
        .post(
            "/profiles",
            json!({"username": "ann", "display_name": "Ann", "bio": "hi"}),
        )
        .await;
    assert_eq!(ann.status, StatusCode::CREATED, "{}", ann.body);
    assert_eq!(keys(&ann.body), PROFILE_KEYS);
    assert!(
        ann.header("x-consistency-token").is_some(),
        "a write issues a token"
    );
    assert_eq!(ann.header("x-db-route"), Some("primary"));
    let ts = ann.body["created_at"].as_str().expect("ts");
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
        "RFC 3339 UTC: {ts}"
    );
    let a = ann.body["id"].as_i64().expect("id");
    let b = c
        .post(
            "/profiles",
            json!({"username": "bob", "display_name": "Bob"}),
        )
        .await
        .body["id"]
        .as_i64()
        .expect("id");
    let cc = c
        .post(
            "/profiles",
            json!({"username": "cat", "display_name": "Cat"}),
        )
        .await
        .body["id"]
        .as_i64()
        .expect("id");
    assert_eq!(
        c.post(
            "/profiles",
            json!({"username": "bob", "display_name": "B2"})
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    let got = c.get(&format!("/profiles/{a}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["bio"], "hi");
    assert!(
        got.header("x-db-route").is_some() && got.header("x-cache").is_some(),
        "a read says where from"
    );
    assert_eq!(
        c.get("/profiles/999999").await.status,
        StatusCode::NOT_FOUND
    );
    let patched = c
        .call(
            Method::PATCH,
            &format!("/profiles/{a}"),
            Some(json!({"display_name": "Ann B."})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(
        (
            patched.body["display_name"].as_str(),
            patched.body["bio"].as_str()
        ),
        (Some("Ann B."), Some("hi"))
    );
    assert_eq!(
        c.get(&format!("/profiles/{a}")).await.body["display_name"],
        "Ann B.",
        "the change is read back"
    );

    // stories
    let mk = |author: i64, title: &str, genre: Option<&str>, published: bool| json!({"author_id": author, "title": title, "body": "text", "genre": genre, "published": published});
    let s1 = c
        .post("/stories", mk(b, "Night River", Some("fantasy"), true))
        .await;
    assert_eq!(s1.status, StatusCode::CREATED, "{}", s1.body);
    assert_eq!(keys(&s1.body), STORY_KEYS);
    assert!(
        s1.body["published_at"].is_string(),
        "published_at set on publish"
    );
    let s1 = s1.body["id"].as_i64().expect("id");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let s2 = c
        .post("/stories", mk(b, "Copper Lantern", None, true))
        .await
        .body["id"]
        .as_i64()
        .expect("id");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let s3 = c
        .post("/stories", mk(cc, "river of echoes", Some("poetry"), true))
        .await
        .body["id"]
        .as_i64()
        .expect("id");
    let draft = c.post("/stories", mk(b, "Draft", None, false)).await;
    assert!(draft.body["published_at"].is_null());
    let draft = draft.body["id"].as_i64().expect("id");
    assert_eq!(
        c.post("/stories", mk(999_999, "x", None, false))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        c.get(&format!("/stories/{s1}")).await.body["title"],
        "Night River"
    );

    let p = c
        .call(
            Method::PATCH,
            &format!("/stories/{draft}"),
            Some(json!({"published": true, "featured": true, "genre": "mystery"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body["published_at"].is_string()
            && p.body["featured"] == true
            && p.body["genre"] == "mystery"
    );
    let p = c
        .call(
            Method::PATCH,
            &format!("/stories/{draft}"),
            Some(json!({"genre": null})),
        )
        .await;
    assert!(p.body["genre"].is_null(), "null clears the genre");
    for _ in 0..3 {
        let v = c
            .call(Method::POST, &format!("/stories/{s2}/views"), None)
            .await;
        assert_eq!(v.status, StatusCode::OK);
    }
    let v = c
        .call(Method::POST, &format!("/stories/{s2}/views"), None)
        .await;
    assert_eq!(v.body, json!({"id": s2, "view_count": 4}));
    assert_eq!(
        c.call(Method::POST, "/stories/999999/views", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // listing, search, order, pagination
    let all = c.get("/stories?published=true").await;
    assert_eq!(keys(&all.body), ["items", "limit", "offset"]);
    assert_eq!(
        (all.body["limit"].as_i64(), all.body["offset"].as_i64()),
        (Some(20), Some(0))
    );
    assert_eq!(
        ids(&all.body),
        vec![draft, s3, s2, s1],
        "recent: newest published_at first"
    );
    assert_eq!(
        ids(&c.get("/stories?published=false").await.body),
        Vec::<i64>::new()
    );
    let trending = c.get("/stories?order=trending&published=true").await;
    assert_eq!(ids(&trending.body)[0], s2, "trending: most viewed first");
    assert_eq!(
        ids(&c.get("/stories?q=RIVER").await.body),
        vec![s3, s1],
        "case-insensitive title search"
    );
    assert_eq!(
        ids(&c.get("/stories?q=50%25").await.body),
        Vec::<i64>::new(),
        "% is literal"
    );
    assert_eq!(ids(&c.get("/stories?genre=poetry").await.body), vec![s3]);
    assert_eq!(
        ids(&c.get(&format!("/stories?author_id={cc}")).await.body),
        vec![s3]
    );
    let page = c.get("/stories?published=true&limit=2&offset=1").await;
    assert_eq!(ids(&page.body), vec![s3, s2]);
    assert_eq!(
        (page.body["limit"].as_i64(), page.body["offset"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(ids(&c.get("/stories/featured").await.body), vec![draft]);
    // A page's body is kept beside its cached rows (app/src/render.rs): read
    // twice, it is the same body; after a write it is the new one.
    let again = c.get("/stories/featured").await;
    assert_eq!(
        (again.header("content-type"), ids(&again.body)),
        (Some("application/json"), vec![draft])
    );
    let renamed = c
        .call(
            Method::PATCH,
            &format!("/stories/{draft}"),
            Some(json!({"title": "Draft, renamed"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let featured = c.get("/stories/featured").await;
    assert_eq!(featured.body["items"][0]["title"], "Draft, renamed");

    // follows, lists, feed, stats
    let f = c
        .call(Method::POST, &format!("/profiles/{a}/following/{b}"), None)
        .await;
    assert_eq!(f.status, StatusCode::CREATED, "{}", f.body);
    assert_eq!(
        keys(&f.body["follow"]),
        ["created_at", "follower_id", "following_id"]
    );
    assert_eq!(keys(&f.body["target_stats"]), STATS_KEYS);
    assert_eq!(
        f.body["target_stats"]["follower_count"], 1,
        "target_stats read after the write"
    );
    assert_eq!(f.body["target_stats"]["story_count"], 3);
    assert_eq!(f.body["target_stats"]["published_story_count"], 3);
    let again = c
        .call(Method::POST, &format!("/profiles/{a}/following/{b}"), None)
        .await;
    assert_eq!(again.status, StatusCode::OK, "already following");
    assert_eq!(
        again.body["follow"]["created_at"],
        f.body["follow"]["created_at"]
    );
    assert_eq!(
        c.call(Method::POST, &format!("/profiles/{a}/following/{cc}"), None)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        c.call(Method::POST, &format!("/profiles/{cc}/following/{b}"), None)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        c.call(
            Method::POST,
            &format!("/profiles/{a}/following/999999"),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let mut followers = ids(&c.get(&format!("/profiles/{b}/followers")).await.body);
    followers.sort();
    assert_eq!(followers, vec![a, cc]);
    let mut following = ids(&c.get(&format!("/profiles/{a}/following")).await.body);
    following.sort();
    assert_eq!(following, vec![b, cc]);
    let quiet = c.get(&format!("/profiles/{b}/feed")).await;
    assert_eq!(
        (quiet.status, ids(&quiet.body)),
        (StatusCode::OK, vec![]),
        "a profile that follows no one: an empty feed, not a 404"
    );
    let feed = c.get(&format!("/profiles/{a}/feed")).await;
    assert_eq!(
        ids(&feed.body),
        vec![draft, s3, s2, s1],
        "feed: followed authors' published stories, newest first"
    );
    assert_eq!(
        ids(&c
            .get(&format!("/profiles/{a}/feed?limit=1&offset=1"))
            .await
            .body),
        vec![s3]
    );
    let stats = c.get(&format!("/profiles/{a}/stats")).await;
    assert_eq!(
        stats.body,
        json!({"story_count": 0, "published_story_count": 0, "follower_count": 0, "following_count": 2})
    );
    let del = c
        .call(
            Method::DELETE,
            &format!("/profiles/{a}/following/{cc}"),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        ids(&c.get(&format!("/profiles/{a}/feed")).await.body),
        vec![draft, s2, s1],
        "unfollow updates the feed"
    );

    // delete
    assert_eq!(
        c.call(Method::DELETE, &format!("/stories/{s1}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(&format!("/stories/{s1}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.call(Method::DELETE, &format!("/stories/{s1}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // operations
    let h = c.get("/health").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(keys(&h.body), ["cache", "primary", "replicas", "status"]);
    assert_eq!(h.body["status"], "ok", "{}", h.body);
    assert_eq!(h.body["primary"]["healthy"], true);
    for r in h.body["replicas"].as_array().expect("replicas") {
        assert_eq!(
            keys(r),
            [
                "consecutive_failures",
                "healthy",
                "lag_bytes",
                "lag_ms",
                "name"
            ]
        );
    }
    assert!(
        h.body["cache"]["l1"]["entries"].is_u64() && h.body["cache"]["l2"]["enabled"].is_boolean()
    );
    let s = c.get("/stats").await;
    assert_eq!(keys(&s.body), ["cache", "pools", "routing"]);
    for k in [
        "primary_reads",
        "replica_reads",
        "writes",
        "sticky_reads",
        "fallbacks",
    ] {
        assert!(s.body["routing"][k].is_u64(), "routing.{k}");
    }
    for k in ["hits", "misses"] {
        assert!(s.body["cache"]["l1"][k].is_u64() && s.body["cache"]["l2"][k].is_u64());
    }
    assert!(s.body["cache"]["l2"]["errors"].is_u64() && s.body["cache"]["hit_rate"].is_number());
    assert!(s.body["cache"]["invalidations"].as_u64().expect("inv") > 0);
    assert!(s.body["pools"]["primary"]["size"].is_u64() && s.body["pools"]["replicas"].is_array());
    let m = c.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.body.as_str().expect("text");
    assert!(
        text.contains("seaway_routing_writes") && text.contains("seaway_cache_hit_rate"),
        "{text}"
    );
}

#[tokio::test]
async fn contract_on_the_embedded_default() {
    let c = sqlite_client().await;
    contract(&c).await;
    let h = c.get("/health").await;
    assert_eq!(
        h.body["cache"]["l2"]["enabled"], false,
        "L1 only without REDIS_URL"
    );
}

#[tokio::test]
async fn contract_on_postgres_replicas_and_redis() {
    let Some(cl) = cluster() else { return };
    let _g = cl.shared().await;
    let t = cl.fresh_db("contract").await;
    let c = pg_client(&t, Duration::from_secs(1)).await;
    contract(&c).await;
    let h = c.get("/health").await;
    assert_eq!(h.body["replicas"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        h.body["cache"]["l2"],
        json!({"enabled": true, "healthy": true})
    );
    let routed = c.get("/stories?published=true&limit=3").await;
    assert!(
        routed
            .header("x-db-route")
            .is_some_and(|r| r.starts_with("replica:") || r == "primary")
    );
}

/// Every row of every table, to show that a rejected request changed nothing.
async fn fingerprint(db: &Db) -> String {
    let p = entity::prelude::Profile::find()
        .all(db.primary())
        .await
        .expect("p");
    let s = entity::prelude::Story::find()
        .all(db.primary())
        .await
        .expect("s");
    let f = entity::prelude::Follow::find()
        .all(db.primary())
        .await
        .expect("f");
    format!("{p:?}{s:?}{f:?}")
}

/// (method, path, body, content type, status, field)
type Case = (
    &'static str,
    String,
    String,
    Option<&'static str>,
    u16,
    Option<&'static str>,
);

fn bad_inputs() -> Vec<Case> {
    let j = Some("application/json");
    let long = |n: usize| "x".repeat(n);
    let c = |m: &'static str, p: &str, b: &str, status: u16, field: Option<&'static str>| -> Case {
        (m, p.to_owned(), b.to_owned(), j, status, field)
    };
    vec![
        c("POST", "/profiles", "{", 400, None),
        c("POST", "/profiles", "[]", 422, None),
        c("POST", "/profiles", "null", 422, None),
        c(
            "POST",
            "/profiles",
            r#"{"display_name":"A"}"#,
            422,
            Some("username"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":"zed"}"#,
            422,
            Some("display_name"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":"zed","display_name":"Z","admin":true}"#,
            422,
            Some("admin"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":5,"display_name":"Z"}"#,
            422,
            Some("username"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":"a b","display_name":"Z"}"#,
            422,
            Some("username"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":"","display_name":"Z"}"#,
            422,
            Some("username"),
        ),
        c(
            "POST",
            "/profiles",
            &format!(r#"{{"username":"{}","display_name":"Z"}}"#, long(51)),
            422,
            Some("username"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":"zéd","display_name":"Z"}"#,
            422,
            Some("username"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":"zed","display_name":""}"#,
            422,
            Some("display_name"),
        ),
        c(
            "POST",
            "/profiles",
            &format!(r#"{{"username":"zed","display_name":"{}"}}"#, long(101)),
            422,
            Some("display_name"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":"zed","display_name":"Z","bio":"a\u0000b"}"#,
            422,
            Some("bio"),
        ),
        c(
            "POST",
            "/profiles",
            r#"{"username":"taken","display_name":"Dup"}"#,
            409,
            Some("username"),
        ),
        (
            "POST",
            "/profiles".into(),
            r#"{"username":"zed","display_name":"Z"}"#.into(),
            Some("text/plain"),
            400,
            None,
        ),
        (
            "POST",
            "/profiles".into(),
            format!(
                r#"{{"username":"zed","display_name":"{}"}}"#,
                long(1_100_000)
            ),
            j,
            413,
            None,
        ),
        (
            "POST",
            "/stories/1/views".into(),
            "x".repeat(1_100_000),
            Some("text/plain"),
            413,
            None,
        ),
        c("GET", "/profiles/abc", "", 400, Some("id")),
        c("GET", "/profiles/0", "", 400, Some("id")),
        c("GET", "/profiles/-3", "", 400, Some("id")),
        c("GET", "/profiles/99999999999999999999", "", 400, Some("id")),
        c("GET", "/profiles/1.5", "", 400, Some("id")),
        c(
            "PATCH",
            "/profiles/1",
            r#"{"username":"new"}"#,
            422,
            Some("username"),
        ),
        c(
            "PATCH",
            "/profiles/1",
            r#"{"display_name":""}"#,
            422,
            Some("display_name"),
        ),
        c(
            "PATCH",
            "/profiles/1",
            r#"{"display_name":7}"#,
            422,
            Some("display_name"),
        ),
        c("PATCH", "/profiles/999999", r#"{"bio":"x"}"#, 404, None),
        // serde takes an array for a struct, field by field: not a change
        c("PATCH", "/profiles/1", "[]", 422, None),
        c("PATCH", "/profiles/1", r#"["Z", "bio"]"#, 422, None),
        c("PATCH", "/stories/1", "[]", 422, None),
        c(
            "POST",
            "/stories",
            r#"{"title":"t","body":"b"}"#,
            422,
            Some("author_id"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":999999,"title":"t","body":"b"}"#,
            422,
            Some("author_id"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":-1,"title":"t","body":"b"}"#,
            422,
            Some("author_id"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":"1","title":"t","body":"b"}"#,
            422,
            Some("author_id"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":1,"title":"","body":"b"}"#,
            422,
            Some("title"),
        ),
        c(
            "POST",
            "/stories",
            &format!(r#"{{"author_id":1,"title":"{}","body":"b"}}"#, long(201)),
            422,
            Some("title"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":1,"title":"t","body":"b","genre":""}"#,
            422,
            Some("genre"),
        ),
        c(
            "POST",
            "/stories",
            &format!(
                r#"{{"author_id":1,"title":"t","body":"b","genre":"{}"}}"#,
                long(51)
            ),
            422,
            Some("genre"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":1,"title":"t","body":"b","published":"yes"}"#,
            422,
            Some("published"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":1,"title":"t","body":"b","featured":true}"#,
            422,
            Some("featured"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":1,"title":"t"}"#,
            422,
            Some("body"),
        ),
        c(
            "POST",
            "/stories",
            r#"{"author_id":1e3,"title":"t","body":"b"}"#,
            422,
            Some("author_id"),
        ),
        c(
            "PATCH",
            "/stories/1",
            r#"{"view_count":100}"#,
            422,
            Some("view_count"),
        ),
        c("PATCH", "/stories/1", r#"{"title":null}"#, 422, None),
        c("PATCH", "/stories/999999", r#"{"title":"x"}"#, 404, None),
        c("DELETE", "/stories/abc", "", 400, Some("id")),
        c("POST", "/stories/0/views", "", 400, Some("id")),
        c("GET", "/stories?limit=0", "", 400, Some("limit")),
        c("GET", "/stories?limit=101", "", 400, Some("limit")),
        c("GET", "/stories?limit=ten", "", 400, Some("limit")),
        c("GET", "/stories?offset=-1", "", 400, Some("offset")),
        c("GET", "/stories?offset=100001", "", 400, Some("offset")),
        c("GET", "/stories?order=oldest", "", 400, Some("order")),
        c(
            "GET",
            "/stories?published=maybe",
            "",
            400,
            Some("published"),
        ),
        c("GET", "/stories?author_id=x", "", 400, Some("author_id")),
        c("GET", "/stories?colour=red", "", 400, Some("colour")),
        c(
            "GET",
            &format!("/stories?q={}", long(201)),
            "",
            400,
            Some("q"),
        ),
        c("GET", "/stories/featured?limit=500", "", 400, Some("limit")),
        c("GET", "/profiles/1/feed?offset=x", "", 400, Some("offset")),
        c(
            "GET",
            "/profiles/1/followers?limit=0",
            "",
            400,
            Some("limit"),
        ),
        c(
            "POST",
            "/profiles/1/following/1",
            "",
            422,
            Some("target_id"),
        ),
        c(
            "POST",
            "/profiles/1/following/abc",
            "",
            400,
            Some("target_id"),
        ),
        c("DELETE", "/profiles/x/following/1", "", 400, Some("id")),
        c("GET", "/profiles/999999/stats", "", 404, None),
        c("GET", "/profiles/999999/feed", "", 404, None),
    ]
}

async fn bad_input_table(c: &Client) {
    // one existing profile (id 1, "taken") and story (id 1)
    let p = c
        .post(
            "/profiles",
            json!({"username": "taken", "display_name": "T"}),
        )
        .await;
    assert_eq!(p.body["id"], 1);
    let s = c
        .post(
            "/stories",
            json!({"author_id": 1, "title": "t", "body": "b"}),
        )
        .await;
    assert_eq!(s.body["id"], 1);
    let cases = bad_inputs();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (method, path, body, ct, status, field) in cases {
        let before = fingerprint(&c.db).await;
        let token = c.token.lock().expect("lock").clone();
        let r = c
            .raw(
                method.parse().expect("method"),
                &path,
                Body::from(body.clone()),
                ct,
                token.as_deref(),
            )
            .await;
        let what = format!(
            "{method} {} {}",
            &path[..path.len().min(60)],
            &body[..body.len().min(60)]
        );
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.body);
        let code = match status {
            400 | 422 => "invalid_input",
            404 => "not_found",
            409 => "conflict",
            413 => "payload_too_large",
            _ => unreachable!(),
        };
        assert_eq!(r.body["error"]["code"], code, "{what}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        if let Some(f) = field {
            assert_eq!(r.body["error"]["field"], f, "{what}: {}", r.body);
        }
        assert_eq!(fingerprint(&c.db).await, before, "{what} changed data");
    }
    let bad_token = c
        .raw(
            Method::GET,
            "/stories/1",
            Body::empty(),
            None,
            Some("not-a-token"),
        )
        .await;
    assert_eq!(bad_token.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_token.body["error"]["field"], "X-Consistency-Token");
}

#[rstest]
#[case::embedded_default("sqlite")]
#[case::postgres_cluster("postgres")]
#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing(#[case] backend: &str) {
    if backend == "sqlite" {
        bad_input_table(&sqlite_client().await).await;
        return;
    }
    let Some(cl) = cluster() else { return };
    let _g = cl.shared().await;
    let t = cl.fresh_db("badinput").await;
    bad_input_table(&pg_client(&t, Duration::from_secs(1)).await).await;
}

#[tokio::test]
async fn read_after_write_through_http_under_lag() {
    let Some(cl) = cluster() else { return };
    let _g = cl.exclusive().await;
    let t = cl.fresh_db("rawhttp").await;
    let a = pg_client(&t, Duration::from_secs(60)).await;
    let b = pg_client(&t, Duration::from_secs(60)).await;
    let p1 = a
        .post("/profiles", json!({"username": "p1", "display_name": "P1"}))
        .await
        .body["id"]
        .as_i64()
        .expect("id");
    let p2 = a
        .post("/profiles", json!({"username": "p2", "display_name": "P2"}))
        .await
        .body["id"]
        .as_i64()
        .expect("id");
    let s = a
        .post(
            "/stories",
            json!({"author_id": p2, "title": "before", "body": "b", "published": true}),
        )
        .await
        .body["id"]
        .as_i64()
        .expect("id");
    // let the replicas catch up, warm B's cache with the old title
    seaway_tests::wait_for(Duration::from_secs(5), || async {
        b.raw(
            Method::GET,
            &format!("/stories/{s}"),
            Body::empty(),
            None,
            None,
        )
        .await
        .status
            == StatusCode::OK
    })
    .await
    .expect("replicated");
    cl.run(&["lag", "1000", "1"]);
    cl.run(&["lag", "1000", "2"]);

    let f = a
        .call(
            Method::POST,
            &format!("/profiles/{p1}/following/{p2}"),
            None,
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED);
    assert_eq!(
        f.body["target_stats"]["follower_count"], 1,
        "target_stats is fresh under lag"
    );

    let w = a
        .call(
            Method::PATCH,
            &format!("/stories/{s}"),
            Some(json!({"title": "after"})),
        )
        .await;
    let token = w.header("x-consistency-token").expect("token").to_owned();
    let with = b
        .raw(
            Method::GET,
            &format!("/stories/{s}"),
            Body::empty(),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(
        with.body["title"], "after",
        "instance B, given A's token, is fresh"
    );
    // The lag was real: the replicas still had the old title when B answered.
    let on_replica = entity::prelude::Story::find_by_id(s)
        .one(&t.replica(0).await)
        .await
        .expect("q")
        .expect("row");
    assert_eq!(
        on_replica.title, "before",
        "the replica had not replayed the write yet"
    );
    cl.reset();
}

#[tokio::test]
async fn with_the_primary_down_health_is_503_writes_fail_clearly_and_replica_reads_answer() {
    let Some(cl) = cluster() else { return };
    let _g = cl.exclusive().await;
    let t = cl.fresh_db("primarydown").await;
    let c = pg_client(&t, Duration::from_secs(60)).await;
    let p = c
        .post(
            "/profiles",
            json!({"username": "still", "display_name": "S"}),
        )
        .await;
    let id = p.body["id"].as_i64().expect("id");
    seaway_tests::wait_for(Duration::from_secs(5), || async {
        entity::prelude::Profile::find_by_id(id)
            .one(&t.replica(0).await)
            .await
            .ok()
            .flatten()
            .is_some()
            && entity::prelude::Profile::find_by_id(id)
                .one(&t.replica(1).await)
                .await
                .ok()
                .flatten()
                .is_some()
    })
    .await
    .expect("replicated");
    *c.token.lock().expect("lock") = None;
    cl.run(&["stop-primary"]);
    let h = c.get("/health").await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.body);
    assert_eq!(h.body["primary"]["healthy"], false);
    let w = c
        .post(
            "/profiles",
            json!({"username": "lost", "display_name": "L"}),
        )
        .await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.body);
    assert_eq!(w.body["error"]["code"], "unavailable");
    *c.token.lock().expect("lock") = None;
    let r = c.get(&format!("/profiles/{id}")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a read that may use a replica still answers: {}",
        r.body
    );
    assert!(
        r.header("x-db-route")
            .is_some_and(|v| v.starts_with("replica:")),
        "{:?}",
        r.header("x-db-route")
    );
    cl.run(&["start-primary"]);
    seaway_tests::wait_for(Duration::from_secs(10), || async {
        c.get("/health").await.status == StatusCode::OK
    })
    .await
    .expect("healthy again");
    cl.reset();
}

/// What a tokenless read answers now: (cache outcome, body).
async fn tokenless(c: &Client, path: &str) -> (String, Value) {
    let r = c.raw(Method::GET, path, Body::empty(), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    (r.header("x-cache").unwrap_or("-").to_owned(), r.body)
}

/// Until `path` is answered from L1.
async fn warm(c: &Client, path: &str) {
    seaway_tests::wait_for(Duration::from_secs(5), || async {
        tokenless(c, path).await.0 == "hit-l1"
    })
    .await
    .unwrap_or_else(|_| panic!("{path} never cached"));
}

/// The paths still answered from L1, of `paths`.
async fn still_cached(c: &Client, paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in paths {
        if tokenless(c, p).await.0 == "hit-l1" {
            out.push(p.clone());
        }
    }
    out
}

#[tokio::test]
async fn a_write_empties_only_what_it_can_change() {
    let Some(cl) = cluster() else { return };
    let _g = cl.shared().await;
    let t = cl.fresh_db("precise").await;
    let c = pg_client(&t, Duration::from_secs(60)).await;
    let mut profiles = Vec::new();
    for i in 0..11 {
        profiles.push(new_profile(&c, &format!("p{i}")).await);
    }
    let mut stories = Vec::new();
    for i in 0..12 {
        stories.push(new_story(&c, profiles[i % 3], &format!("s{i}")).await);
    }
    c.post(
        &format!("/profiles/{}/following/{}", profiles[5], profiles[0]),
        json!({}),
    )
    .await;
    let profile_paths: Vec<String> = profiles[1..]
        .iter()
        .map(|p| format!("/profiles/{p}"))
        .collect();
    let story_paths: Vec<String> = stories[1..]
        .iter()
        .map(|s| format!("/stories/{s}"))
        .collect();
    // the newest five (stories[7..12]) and the five before them
    let newest = "/stories?published=true&limit=5".to_owned();
    let older = "/stories?published=true&limit=5&offset=5".to_owned();
    let feed = format!("/profiles/{}/feed", profiles[5]);
    let followers = format!("/profiles/{}/followers", profiles[0]);
    let all: Vec<String> = profile_paths
        .iter()
        .chain(&story_paths)
        .chain([&newest, &older, &feed, &followers])
        .cloned()
        .collect();
    let rewarm = || async {
        for p in &all {
            warm(&c, p).await;
        }
    };
    rewarm().await;

    // PATCH {}: a locking read and an update of updated_at, of one story
    let r = c
        .call(
            Method::PATCH,
            &format!("/stories/{}", stories[0]),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let kept = still_cached(&c, &profile_paths).await;
    assert_eq!(
        kept.len(),
        10,
        "PATCH {{}} of a story left every profile cached"
    );
    let kept = still_cached(&c, &story_paths).await;
    assert_eq!(kept.len(), 11, "and every other story");

    // a view of one story: that story and the pages that hold it
    let viewed = stories[11]; // on the newest page
    let r = c.post(&format!("/stories/{viewed}/views"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let others: Vec<String> = story_paths
        .iter()
        .filter(|p| **p != format!("/stories/{viewed}"))
        .cloned()
        .collect();
    assert_eq!(
        still_cached(&c, &others).await.len(),
        10,
        "a view left the other stories cached"
    );
    assert_eq!(
        still_cached(&c, &profile_paths).await.len(),
        10,
        "and every profile"
    );
    assert_eq!(
        still_cached(&c, &[older.clone(), followers.clone()])
            .await
            .len(),
        2,
        "and the pages without it"
    );
    assert_eq!(tokenless(&c, &format!("/stories/{viewed}")).await.0, "miss");
    assert_eq!(
        tokenless(&c, &newest).await.0,
        "miss",
        "the page that holds it"
    );
    rewarm().await;

    // a profile's display name: no story, follow list of others, or feed
    let r = c
        .call(
            Method::PATCH,
            &format!("/profiles/{}", profiles[4]),
            Some(json!({"display_name": "Q"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        still_cached(&c, &story_paths).await.len(),
        11,
        "no story moved"
    );
    assert_eq!(
        still_cached(
            &c,
            &[
                newest.clone(),
                older.clone(),
                feed.clone(),
                followers.clone()
            ]
        )
        .await
        .len(),
        4
    );
    assert_eq!(
        tokenless(&c, &format!("/profiles/{}", profiles[4])).await.0,
        "miss"
    );
    rewarm().await;

    // a title: the story, the page that holds it, nothing else
    let titled = stories[3]; // on the older page
    let r = c
        .call(
            Method::PATCH,
            &format!("/stories/{titled}"),
            Some(json!({"title": "renamed"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        tokenless(&c, &newest).await.0,
        "hit-l1",
        "the page without it"
    );
    let (outcome, page) = tokenless(&c, &older).await;
    assert_eq!(outcome, "miss", "the page that holds it");
    assert!(page.to_string().contains("renamed"));
    // the feed that holds it: its rows again by key, not its ids (a title
    // neither picks nor orders a feed)
    let before = c.db.cache_stats().await;
    let (outcome, page) = tokenless(&c, &feed).await;
    assert_eq!(outcome, "miss", "the feed that holds it");
    assert!(page.to_string().contains("renamed"));
    let after = c.db.cache_stats().await;
    assert_eq!(
        (after.l1_hits - before.l1_hits, after.loads - before.loads),
        (1, 1),
        "the feed's ids a hit, its rows loaded again"
    );
    assert_eq!(still_cached(&c, &profile_paths).await.len(), 10);
    let by_level = c.db.cache_stats().await.invalidations_by_level;
    println!("invalidations by level after the writes: {by_level:?}");
}

/// A feed's ids cached while a story among them is deleted behind the
/// cache's back (SQL the service does not see): once another write of the
/// page empties its rows, they come back one short, and the feed is read
/// again in one query: a full page, the next story moved up. Without that,
/// the page would keep one story fewer than it asked for.
#[tokio::test]
async fn a_feed_whose_cached_ids_name_a_deleted_story_is_read_again_whole() {
    use sea_orm::ConnectionTrait;
    let Some(cl) = cluster() else { return };
    let _g = cl.shared().await;
    let t = cl.fresh_db("feedgone").await;
    let c = pg_client(&t, Duration::from_secs(60)).await;
    let (reader, writer) = (
        new_profile(&c, "reader").await,
        new_profile(&c, "writer").await,
    );
    let mut stories = Vec::new();
    for i in 0..3 {
        stories.push(new_story(&c, writer, &format!("s{i}")).await);
    }
    let r = c
        .post(&format!("/profiles/{reader}/following/{writer}"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let feed = format!("/profiles/{reader}/feed?limit=2");
    warm(&c, &feed).await;
    assert_eq!(ids(&tokenless(&c, &feed).await.1), [stories[2], stories[1]]);
    t.primary()
        .await
        .execute_unprepared(&format!("DELETE FROM stories WHERE id = {}", stories[1]))
        .await
        .expect("delete");
    let r = c
        .call(
            Method::PATCH,
            &format!("/stories/{}", stories[2]),
            Some(json!({"title": "moved"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let mut last = Vec::new();
    let whole = seaway_tests::wait_for(Duration::from_secs(5), || {
        let (c, feed, want) = (&c, &feed, [stories[2], stories[0]]);
        async move { ids(&tokenless(c, feed).await.1) == want }
    })
    .await;
    if whole.is_err() {
        last = ids(&tokenless(&c, &feed).await.1);
    }
    assert!(
        whole.is_ok(),
        "the feed kept the deleted story's place empty: {last:?}"
    );
}

/// A feed read as two cached reads says `X-Cache: miss` when either
/// loaded: after a follow of an author with no published story, its ids
/// are read again and its rows, the same ones, are an L1 hit.
#[tokio::test]
async fn a_feed_whose_ids_were_read_again_says_miss() {
    let Some(cl) = cluster() else { return };
    let _g = cl.shared().await;
    let t = cl.fresh_db("feedmiss").await;
    let c = pg_client(&t, Duration::from_secs(60)).await;
    let (reader, writer, quiet) = (
        new_profile(&c, "reader").await,
        new_profile(&c, "writer").await,
        new_profile(&c, "quiet").await,
    );
    new_story(&c, writer, "s").await;
    for followed in [writer, quiet] {
        if followed == quiet {
            let feed = format!("/profiles/{reader}/feed");
            warm(&c, &feed).await;
        }
        let r = c
            .post(
                &format!("/profiles/{reader}/following/{followed}"),
                json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let before = c.db.cache_stats().await;
    let (outcome, page) = tokenless(&c, &format!("/profiles/{reader}/feed")).await;
    let after = c.db.cache_stats().await;
    assert_eq!(ids(&page).len(), 1);
    assert_eq!(
        (after.loads - before.loads, after.l1_hits - before.l1_hits),
        (1, 1),
        "the ids loaded, the rows a hit"
    );
    assert_eq!(outcome, "miss", "a response that loaded said {outcome}");
}

// ------------------------------------------------ the embedded default under load

/// 16 clients writing at once on the embedded default (title PATCHes over
/// five stories, new stories, follows and unfollows): no answer is a 5xx,
/// and every write is there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_the_embedded_default_never_fail() {
    let c = std::sync::Arc::new(sqlite_client().await);
    let mut profiles = Vec::new();
    for i in 0..16 {
        let p = c
            .post(
                "/profiles",
                json!({"username": format!("w{i}"), "display_name": "W"}),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
        profiles.push(p.body["id"].as_i64().expect("id"));
    }
    let mut stories = Vec::new();
    for i in 0..5 {
        let s = c
            .post(
                "/stories",
                json!({"author_id": profiles[0], "title": format!("s{i}"), "body": "b", "published": true}),
            )
            .await;
        assert_eq!(s.status, StatusCode::CREATED, "{}", s.body);
        stories.push(s.body["id"].as_i64().expect("id"));
    }
    let mut tasks = Vec::new();
    for w in 0..16usize {
        let (c, stories, profiles) = (c.clone(), stories.clone(), profiles.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..10usize {
                let r = match n % 4 {
                    0 | 1 => {
                        c.call(
                            Method::PATCH,
                            &format!("/stories/{}", stories[(w + n) % 5]),
                            Some(json!({"title": format!("w{w}n{n}")})),
                        )
                        .await
                    }
                    2 => {
                        c.post(
                            "/stories",
                            json!({"author_id": profiles[w], "title": format!("new w{w}n{n}"), "body": "b", "published": true}),
                        )
                        .await
                    }
                    _ => {
                        c.call(
                            Method::POST,
                            &format!("/profiles/{}/following/{}", profiles[w], profiles[(w + 1) % 16]),
                            None,
                        )
                        .await
                    }
                };
                statuses.push(r.status.as_u16());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let failed: Vec<_> = all.iter().filter(|s| **s >= 500).collect();
    println!(
        "concurrent writes on SQLite: {} answers, {} of 5xx",
        all.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "5xx under concurrent writes: {failed:?}");
    assert!(
        all.iter().all(|s| (200..300).contains(s) || *s == 409),
        "{all:?}"
    );
    // every write is there: 16 x 2 new stories, each follow, the titles
    let db_news = entity::prelude::Story::find()
        .all(c.db.primary())
        .await
        .expect("stories")
        .iter()
        .filter(|s| s.title.starts_with("new "))
        .count();
    assert_eq!(db_news, 16 * 2, "every new story is stored");
    let follows = entity::prelude::Follow::find()
        .all(c.db.primary())
        .await
        .expect("follows");
    assert_eq!(follows.len(), 16, "every follow is stored");
    for id in &stories {
        let got = c.get(&format!("/stories/{id}")).await;
        assert!(
            got.body["title"]
                .as_str()
                .is_some_and(|t| t.starts_with('w')),
            "a patched title is read back: {}",
            got.body
        );
    }
}

/// A client that writes its whole body before it reads (as Python's urllib
/// and requests do) reads the 413 in the error shape, 20 times of 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_its_whole_body_first_reads_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = sqlite_client().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = c.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let body = vec![b'x'; 2 << 20];
    let mut read_413 = 0;
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /stories HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let sent = async {
            s.write_all(head.as_bytes()).await?;
            s.write_all(&body).await?;
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).await?;
            Ok::<_, std::io::Error>(reply)
        };
        match tokio::time::timeout(Duration::from_secs(10), sent).await {
            Ok(Ok(reply)) => {
                let text = String::from_utf8_lossy(&reply);
                if text.starts_with("HTTP/1.1 413") && text.contains("\"payload_too_large\"") {
                    read_413 += 1;
                } else {
                    println!("reply: {}", text.chars().take(200).collect::<String>());
                }
            }
            Ok(Err(e)) => println!("the client failed: {e}"),
            Err(_) => println!("the client waited 10 s"),
        }
    }
    assert_eq!(read_413, 20, "clients that read the 413");

    // and Python's urllib itself, as the issue tried it
    let script = r#"
import json, sys, urllib.request, urllib.error
ok = 0
for _ in range(20):
    req = urllib.request.Request(sys.argv[1], data=b"x" * (2 << 20),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        if e.code == 413 and json.loads(e.read())["error"]["code"] == "payload_too_large":
            ok += 1
    except Exception as e:
        print("urllib:", e)
print(ok)
"#;
    let url = format!("http://{addr}/stories");
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&url)
        .output()
        .await;
    server.abort();
    match out {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            println!("urllib: {}", text.trim());
            assert_eq!(
                text.trim().lines().last(),
                Some("20"),
                "urllib clients that read the 413: {text}"
            );
        }
        Err(e) => println!("python3 not found ({e}): the raw client above stands for urllib"),
    }
}

/// Every operation of the OpenAPI document (`GET /openapi.json`) is served:
/// none answers the router's fallbacks (404 "route not found", 405).
#[tokio::test]
async fn every_documented_operation_is_served() {
    let c = sqlite_client().await;
    let doc = c.get("/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let paths = doc.body["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "1").replace("{target_id}", "2");
        for method in ops.as_object().expect("operations").keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = matches!(m, Method::POST | Method::PATCH).then(|| json!({}));
            let r = c.call(m.clone(), &concrete, body).await;
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
            assert_ne!(
                r.body["error"]["message"], "route not found",
                "{m} {path} is documented but not routed"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 19, "the operations of API.md");
}

/// Every operation the route tables (`app/src/routes/*.rs`) serve is in the
/// OpenAPI document, and nothing else is: read from the tables' source, so
/// that a route added without its document fails here.
#[tokio::test]
async fn every_routed_operation_is_documented() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../app/src/routes");
    let mut routed = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("app/src/routes") {
        let src = std::fs::read_to_string(entry.expect("entry").path()).expect("source");
        for call in src.split(".route(").skip(1) {
            // the path, then the method chain up to the call's closing paren
            let path = call.split('"').nth(1).expect("a path literal");
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|&(_, ch)| {
                    depth += match ch {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(call.len(), |(i, _)| i);
            let chain = &call[..end];
            for method in ["get", "post", "patch", "put", "delete"] {
                let called = chain
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| i == 0 || !chain.as_bytes()[i - 1].is_ascii_alphanumeric());
                if called {
                    routed.insert((method.to_owned(), path.to_owned()));
                }
            }
        }
    }
    let c = sqlite_client().await;
    let doc = c.get("/openapi.json").await;
    let documented: std::collections::BTreeSet<(String, String)> = doc.body["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(|m| (m.clone(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    println!(
        "{} operations routed, {} documented",
        routed.len(),
        documented.len()
    );
    assert_eq!(routed.len(), 19, "the operations of API.md: {routed:?}");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routed but not documented: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
}
