//! Migrations run on the primary: [`ensure_primary`] asks the server whether
//! it is in recovery before anything is changed.

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

/// Why a migration target was refused or could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// The server answered `pg_is_in_recovery() = true`.
    #[error(
        "refusing to migrate {url}: the target is a read replica (pg_is_in_recovery() is true); migrations run on the primary"
    )]
    ReadReplica {
        /// The target, password redacted.
        url: String,
    },
    /// Connecting or asking failed.
    #[error("cannot use database {url}: {message}")]
    Connect {
        /// The target, password redacted.
        url: String,
        /// What failed, password redacted.
        message: String,
    },
}

/// The library's redaction (one function for the service and this CLI):
/// the password and `password=`/`sslpassword=` parameters become `***`, a
/// URL that does not parse prints as `<unparseable url>`.
///
/// ```
/// assert_eq!(
///     migration::redact_url("postgres://app:s3cret@db:5432/x"),
///     "postgres://app:***@db:5432/x"
/// );
/// ```
pub use seaway::redact_url;

/// Fails with [`GuardError::ReadReplica`] when `db` is a PostgreSQL server in
/// recovery (a streaming replica). Other backends pass.
///
/// # Errors
///
/// [`GuardError::ReadReplica`] on a replica, [`GuardError::Connect`] when the
/// question cannot be asked.
pub async fn ensure_primary(db: &DatabaseConnection, url: &str) -> Result<(), GuardError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS in_recovery",
        ))
        .await
        .map_err(|e| connect_error(url, &e.to_string()))?;
    let in_recovery: bool = row
        .map(|r| r.try_get("", "in_recovery"))
        .transpose()
        .map_err(|e| connect_error(url, &e.to_string()))?
        .unwrap_or(false);
    if in_recovery {
        return Err(GuardError::ReadReplica {
            url: redact_url(url),
        });
    }
    Ok(())
}

/// Connects to `url` and checks with [`ensure_primary`] that it may be migrated.
///
/// # Errors
///
/// As [`ensure_primary`]; connection errors are redacted.
pub async fn connect_primary(url: &str) -> Result<DatabaseConnection, GuardError> {
    if let Some(path) = sqlite_parent_dir(url) {
        std::fs::create_dir_all(&path).map_err(|e| connect_error(url, &e.to_string()))?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(std::time::Duration::from_secs(5));
    let db = Database::connect(options)
        .await
        .map_err(|e| connect_error(url, &e.to_string()))?;
    ensure_primary(&db, url).await?;
    Ok(db)
}

/// The directory of an SQLite file URL, to create before connecting.
fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?;
    (!parent.as_os_str().is_empty()).then(|| parent.to_path_buf())
}

fn connect_error(url: &str, message: &str) -> GuardError {
    GuardError::Connect {
        url: redact_url(url),
        message: seaway::redact_message(message, url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_password() {
        let cases = [
            ("postgres://u:pw@h:1/d", "postgres://u:***@h:1/d"),
            ("postgres://u@h/d", "postgres://u@h/d"),
            (
                "sqlite://./data/x.db?mode=rwc",
                "sqlite://./data/x.db?mode=rwc",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }

    /// The nasty URLs of the library's table, through this CLI's errors.
    #[test]
    fn nasty_urls_never_print_their_secret() {
        for url in [
            "postgres://u@h/d?password=s3cret",
            "postgres://u@h/d?sslmode=verify-full&sslpassword=s3cret",
            "postgres://u:s3/cret@h/d",
            "postgres://u:s3%2Fcret@h/d",
            "postgres://u:s3cret@[::1/d",
            "not a url s3cret",
        ] {
            let e = connect_error(url, "connection refused");
            let shown = e.to_string();
            assert!(
                !shown.contains("s3") && !shown.contains("cret"),
                "{url} -> {shown}"
            );
        }
    }

    #[test]
    fn finds_the_sqlite_directory() {
        assert_eq!(
            sqlite_parent_dir("sqlite://./data/seaway.db?mode=rwc"),
            Some(std::path::PathBuf::from("./data"))
        );
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("postgres://h/d"), None);
    }
}
