//! The migration CLI: works on the primary (and the embedded default), refuses a replica.

use std::process::Command;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_migration"))
}

#[test]
fn migrates_the_embedded_default_in_its_directory() {
    let dir = std::env::temp_dir().join(format!("seaway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = cli()
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .arg("up")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.join("data/seaway.db").exists(),
        "created ./data/seaway.db"
    );
    let status = cli()
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .arg("status")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&status.stdout);
    let all = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert_eq!(all, 4, "the schema's migrations");
    assert_eq!(text.matches("Applied").count(), all, "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The cluster's URLs, or `None` (skipped, said) outside scripts/test.sh.
fn cluster() -> Option<(String, String)> {
    match (
        std::env::var("DATABASE_URL"),
        std::env::var("READ_REPLICA_URLS"),
    ) {
        (Ok(p), Ok(r)) if p.starts_with("postgres") => {
            Some((p, r.split(',').next().unwrap_or_default().to_owned()))
        }
        _ => {
            assert!(
                std::env::var("SEAWAY_REQUIRE_CLUSTER").map_or(true, |v| v != "1"),
                "the cluster is required but its environment is missing"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: needs the cluster; run scripts/test.sh"
            );
            None
        }
    }
}

fn with_password(url: &str) -> String {
    url.replacen(
        "postgres://postgres@",
        "postgres://postgres:hunter2secret@",
        1,
    )
}

#[test]
fn refuses_a_read_replica_without_printing_the_password() {
    let Some((_, replica)) = cluster() else {
        return;
    };
    let out = cli()
        .arg("--database-url")
        .arg(with_password(&replica))
        .arg("up")
        .output()
        .expect("run");
    assert!(!out.status.success(), "must exit non-zero on a replica");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("read replica") && text.contains("primary"),
        "says why: {text}"
    );
    assert!(!text.contains("hunter2secret"), "password leaked: {text}");
}

#[test]
fn works_on_the_primary() {
    let Some((primary, _)) = cluster() else {
        return;
    };
    // `status` reads the migration table on the primary's admin database.
    let out = cli()
        .arg("--database-url")
        .arg(&primary)
        .arg("status")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("m20250101_000001_create_profiles"));
}
