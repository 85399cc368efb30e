//! Shared set-up of the examples: a fresh embedded SQLite database, migrated.

use migration::{Migrator, MigratorTrait};
use seaway::{Config, Db};

/// A Seaway handle on a new SQLite file in the temporary directory: the
/// primary is a read-write pool, `read_replica` a read-only pool on the same file.
///
/// # Panics
///
/// When the temporary directory is not writable.
pub async fn embedded_db(name: &str) -> Db {
    let dir = std::env::temp_dir().join(format!("seaway-example-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}/example.db?mode=rwc", dir.display());
    let db = Db::connect(
        Config::builder()
            .database_url(url)
            .sqlite_file_defaults(true)
            .build(),
    )
    .await
    .expect("connect");
    Migrator::up(&db, None).await.expect("migrate");
    db
}

/// Inserts a profile through `db` (routed: a write goes to the primary).
///
/// # Panics
///
/// On a database error.
pub async fn profile(db: &Db, username: &str) -> entity::profile::Model {
    use sea_orm::{ActiveModelTrait, Set};
    let now = chrono::Utc::now();
    entity::profile::ActiveModel {
        username: Set(username.to_owned()),
        display_name: Set(username.to_owned()),
        bio: Set(String::new()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert profile")
}

/// Inserts a published story through `db`.
///
/// # Panics
///
/// On a database error.
pub async fn story(db: &Db, author: i64, title: &str) -> entity::story::Model {
    use sea_orm::{ActiveModelTrait, Set};
    let now = chrono::Utc::now();
    entity::story::ActiveModel {
        author_id: Set(author),
        title: Set(title.to_owned()),
        body: Set("...".to_owned()),
        genre: Set(None),
        published: Set(true),
        featured: Set(false),
        view_count: Set(0),
        published_at: Set(Some(now)),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert story")
}
