//! The schema of API.md, checked by introspection on SQLite and on the
//! PostgreSQL primary; the cluster is a real streaming replica; relations.

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait, ModelTrait, Statement,
};
use seaway_tests::{cluster, insert_profile, insert_story, wait_for};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// (table, column, type as the server names it, nullable)
type Col = (String, String, String, bool);

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .expect(sql)
}

async fn pg_columns(db: &DatabaseConnection) -> BTreeSet<Col> {
    rows(db, "SELECT table_name::text AS t, column_name::text AS c, \
              CASE WHEN character_maximum_length IS NOT NULL THEN data_type || '(' || character_maximum_length || ')' ELSE data_type END AS ty, \
              is_nullable = 'YES' AS n \
              FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('profiles','stories','follows')")
        .await
        .iter()
        .map(|r| {
            (
                r.try_get("", "t").expect("t"),
                r.try_get("", "c").expect("c"),
                r.try_get("", "ty").expect("ty"),
                r.try_get("", "n").expect("n"),
            )
        })
        .collect()
}

fn expected_pg() -> BTreeSet<Col> {
    let c = |t: &str, c: &str, ty: &str, n: bool| (t.to_owned(), c.to_owned(), ty.to_owned(), n);
    let tz = "timestamp with time zone";
    [
        c("profiles", "id", "bigint", false),
        c("profiles", "username", "character varying(50)", false),
        c("profiles", "display_name", "character varying(100)", false),
        c("profiles", "bio", "text", false),
        c("profiles", "created_at", tz, false),
        c("profiles", "updated_at", tz, false),
        c("stories", "id", "bigint", false),
        c("stories", "author_id", "bigint", false),
        c("stories", "title", "character varying(200)", false),
        c("stories", "body", "text", false),
        c("stories", "genre", "character varying(50)", true),
        c("stories", "published", "boolean", false),
        c("stories", "featured", "boolean", false),
        c("stories", "view_count", "bigint", false),
        c("stories", "published_at", tz, true),
        c("stories", "created_at", tz, false),
        c("stories", "updated_at", tz, false),
        c("follows", "follower_id", "bigint", false),
        c("follows", "following_id", "bigint", false),
        c("follows", "created_at", tz, false),
    ]
    .into_iter()
    .collect()
}

async fn pg_strings(db: &DatabaseConnection, sql: &str) -> BTreeSet<String> {
    rows(db, sql)
        .await
        .iter()
        .map(|r| r.try_get("", "s").expect("s"))
        .collect()
}

async fn check_pg_schema(db: &DatabaseConnection) {
    assert_eq!(pg_columns(db).await, expected_pg());
    let indexes = pg_strings(db, "SELECT indexdef AS s FROM pg_indexes WHERE schemaname = 'public' AND tablename IN ('profiles','stories','follows')").await;
    let want = [
        "CREATE UNIQUE INDEX profiles_pkey ON public.profiles USING btree (id)",
        "CREATE UNIQUE INDEX profiles_username_key ON public.profiles USING btree (username)",
        "CREATE UNIQUE INDEX stories_pkey ON public.stories USING btree (id)",
        "CREATE INDEX idx_stories_author_published_at ON public.stories USING btree (author_id, published_at DESC)",
        "CREATE INDEX idx_stories_published_published_at ON public.stories USING btree (published, published_at DESC)",
        "CREATE INDEX idx_stories_published_view_count ON public.stories USING btree (published, view_count DESC)",
        "CREATE INDEX idx_stories_genre ON public.stories USING btree (genre)",
        "CREATE INDEX idx_stories_feed ON public.stories USING btree (author_id, published_at DESC, id DESC) WHERE (published = true)",
        "CREATE UNIQUE INDEX follows_pkey ON public.follows USING btree (follower_id, following_id)",
        "CREATE INDEX idx_follows_following_id ON public.follows USING btree (following_id)",
    ];
    for w in want {
        assert!(
            indexes.contains(w),
            "missing index: {w}\nhave: {indexes:#?}"
        );
    }
    let fks = pg_strings(db, "SELECT conrelid::regclass::text || ': ' || pg_get_constraintdef(oid) AS s FROM pg_constraint WHERE contype = 'f'").await;
    for w in [
        "stories: FOREIGN KEY (author_id) REFERENCES profiles(id) ON DELETE CASCADE",
        "follows: FOREIGN KEY (follower_id) REFERENCES profiles(id) ON DELETE CASCADE",
        "follows: FOREIGN KEY (following_id) REFERENCES profiles(id) ON DELETE CASCADE",
    ] {
        assert!(fks.contains(w), "missing foreign key: {w}\nhave: {fks:#?}");
    }
    let defaults = pg_strings(db, "SELECT table_name || '.' || column_name || '=' || column_default AS s FROM information_schema.columns WHERE table_schema = 'public' AND column_default IS NOT NULL AND column_name <> 'id'").await;
    for w in [
        "profiles.bio=''::text",
        "stories.published=false",
        "stories.featured=false",
        "stories.view_count=0",
    ] {
        assert!(defaults.contains(w), "missing default {w}: {defaults:?}");
    }
    let serial = pg_strings(db, "SELECT table_name || '.' || column_default AS s FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'id'").await;
    assert!(
        serial.iter().all(|s| s.contains("nextval(")),
        "ids are BIGSERIAL: {serial:?}"
    );
}

async fn sqlite_strings(db: &DatabaseConnection, sql: &str) -> BTreeSet<String> {
    pg_strings(db, sql).await
}

async fn check_sqlite_schema(db: &DatabaseConnection) {
    let cols = sqlite_strings(
        db,
        "SELECT m.name || '.' || p.name || ':' || lower(p.type) || ':' || p.\"notnull\" || ':' || p.pk AS s \
         FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.name IN ('profiles','stories','follows')",
    )
    .await;
    for w in [
        "profiles.id:integer:1:1",
        "profiles.username:varchar(50):1:0",
        "profiles.display_name:varchar(100):1:0",
        "profiles.bio:text:1:0",
        "stories.author_id:integer:1:0",
        "stories.title:varchar(200):1:0",
        "stories.genre:varchar(50):0:0",
        "stories.published:boolean:1:0",
        "stories.view_count:integer:1:0",
        "stories.published_at:timestamp_with_timezone_text:0:0",
        "follows.follower_id:integer:1:1",
        "follows.following_id:integer:1:2",
    ] {
        assert!(cols.contains(w), "missing column {w}: {cols:#?}");
    }
    assert_eq!(cols.len(), 20, "{cols:#?}");
    let idx = sqlite_strings(db, "SELECT m.name || ':' || i.name || ':' || i.\"unique\" AS s FROM sqlite_master m JOIN pragma_index_list(m.name) i WHERE m.type = 'table'").await;
    for w in [
        "stories:idx_stories_author_published_at:0",
        "stories:idx_stories_published_published_at:0",
        "stories:idx_stories_published_view_count:0",
        "stories:idx_stories_genre:0",
        "stories:idx_stories_feed:0",
        "follows:idx_follows_following_id:0",
    ] {
        assert!(idx.contains(w), "missing index {w}: {idx:#?}");
    }
    assert!(
        idx.iter()
            .any(|s| s.starts_with("profiles:") && s.ends_with(":1")),
        "username unique: {idx:?}"
    );
    let desc = sqlite_strings(db, "SELECT m.name || ':' || group_concat(x.name || case when x.desc then ' desc' else '' end, ',') AS s FROM sqlite_master m, pragma_index_xinfo(m.name) x WHERE m.type = 'index' AND m.name LIKE 'idx_%' AND x.key GROUP BY m.name").await;
    assert!(
        desc.contains("idx_stories_author_published_at:author_id,published_at desc"),
        "{desc:?}"
    );
    assert!(
        desc.contains("idx_stories_feed:author_id,published_at desc,id desc"),
        "{desc:?}"
    );
    let partial = sqlite_strings(db, "SELECT i.name AS s FROM sqlite_master m JOIN pragma_index_list(m.name) i WHERE m.type = 'table' AND i.partial").await;
    assert_eq!(
        partial,
        BTreeSet::from(["idx_stories_feed".to_owned()]),
        "partial indexes"
    );
    let fks = sqlite_strings(db, "SELECT m.name || ':' || f.\"from\" || '->' || f.\"table\" || '.' || f.\"to\" || ':' || f.on_delete AS s FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f").await;
    for w in [
        "stories:author_id->profiles.id:CASCADE",
        "follows:follower_id->profiles.id:CASCADE",
        "follows:following_id->profiles.id:CASCADE",
    ] {
        assert!(fks.contains(w), "missing fk {w}: {fks:?}");
    }
}

async fn table_count(db: &DatabaseConnection) -> usize {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT name AS s FROM sqlite_master WHERE type = 'table' AND name IN ('profiles','stories','follows')"
        }
        _ => {
            "SELECT table_name::text AS s FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ('profiles','stories','follows')"
        }
    };
    pg_strings(db, sql).await.len()
}

#[tokio::test]
async fn sqlite_migrations_up_down_up_match_the_contract() {
    let dir = std::env::temp_dir().join(format!("seaway-schema-{:x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}/s.db?mode=rwc", dir.display());
    let db = Database::connect(&url).await.expect("sqlite");
    Migrator::up(&db, None).await.expect("up");
    check_sqlite_schema(&db).await;
    Migrator::down(&db, None).await.expect("down");
    assert_eq!(table_count(&db).await, 0, "down removes every table");
    Migrator::up(&db, None).await.expect("up again");
    check_sqlite_schema(&db).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_migrations_up_down_up_match_the_contract() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("schema").await;
    let db = t.primary().await;
    check_pg_schema(&db).await;
    Migrator::down(&db, None).await.expect("down");
    assert_eq!(table_count(&db).await, 0, "down removes every table");
    Migrator::up(&db, None).await.expect("up again");
    check_pg_schema(&db).await;
}

#[tokio::test]
async fn the_replica_streams_and_honours_injected_lag() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("stream").await;
    let primary = t.primary().await;
    let replica = t.replica(0).await;
    let in_recovery = replica
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS r",
        ))
        .await
        .expect("query")
        .expect("row")
        .try_get::<bool>("", "r")
        .expect("r");
    assert!(in_recovery, "the replica is a hot standby");

    let id = insert_profile(&primary, "streamed").await;
    let seen = wait_for(Duration::from_secs(5), || async {
        entity::prelude::Profile::find_by_id(id)
            .one(&replica)
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    assert!(
        seen.is_ok(),
        "a row written on the primary appears on the replica"
    );

    c.run(&["lag", "1000", "1"]);
    let written = Instant::now();
    let id = insert_profile(&primary, "delayed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        entity::prelude::Profile::find_by_id(id)
            .one(&replica)
            .await
            .expect("read")
            .is_none(),
        "with lag 1000 the row is not there after 300 ms"
    );
    wait_for(Duration::from_secs(5), || async {
        entity::prelude::Profile::find_by_id(id)
            .one(&replica)
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await
    .expect("the row arrives");
    let took = written.elapsed();
    println!("row appeared on the lagging replica after {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "it appeared after about a second, not {took:?}"
    );
    c.reset();
}

#[tokio::test]
async fn relations_load_the_right_rows() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("relations").await;
    let db = t.primary().await;
    relations_on(&db).await;
}

#[tokio::test]
async fn relations_load_the_right_rows_on_sqlite() {
    let db = Database::connect("sqlite::memory:").await.expect("sqlite");
    Migrator::up(&db, None).await.expect("up");
    relations_on(&db).await;
}

async fn relations_on(db: &DatabaseConnection) {
    use entity::prelude::*;
    use entity::profile::{Followers, Followings};
    use sea_orm::{ActiveModelTrait, Set};
    let a = insert_profile(db, "a").await;
    let b = insert_profile(db, "b").await;
    let cc = insert_profile(db, "c").await;
    let s1 = insert_story(db, a, "one", true).await;
    let s2 = insert_story(db, a, "two", false).await;
    insert_story(db, b, "three", true).await;
    for (f, g) in [(b, a), (cc, a), (a, b)] {
        entity::follow::ActiveModel {
            follower_id: Set(f),
            following_id: Set(g),
            created_at: Set(chrono::Utc::now()),
        }
        .insert(db)
        .await
        .expect("follow");
    }
    let pa = Profile::find_by_id(a).one(db).await.expect("q").expect("a");
    let mut stories: Vec<i64> = pa
        .find_related(Story)
        .all(db)
        .await
        .expect("stories")
        .iter()
        .map(|s| s.id)
        .collect();
    stories.sort();
    assert_eq!(stories, vec![s1, s2], "a profile's stories");
    let author = Story::find_by_id(s1)
        .one(db)
        .await
        .expect("q")
        .expect("s1")
        .find_related(Profile)
        .one(db)
        .await
        .expect("q");
    assert_eq!(author.map(|p| p.id), Some(a), "a story's author");
    let mut followers: Vec<i64> = pa
        .find_linked(Followers)
        .all(db)
        .await
        .expect("followers")
        .iter()
        .map(|p| p.id)
        .collect();
    followers.sort();
    assert_eq!(followers, vec![b, cc], "a's followers");
    let followings: Vec<i64> = pa
        .find_linked(Followings)
        .all(db)
        .await
        .expect("followings")
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(followings, vec![b], "whom a follows");
}
