//! The migration CLI: `migration [up|down|status|fresh|refresh|reset]`.
//!
//! Uses `DATABASE_URL`, or the service's embedded SQLite file when it is not
//! set. Refuses a PostgreSQL server in recovery (a read replica) before doing
//! anything. Never prints a password.

use clap::{Parser, Subcommand};
use migration::{DEFAULT_DATABASE_URL, Migrator, MigratorTrait, connect_primary, redact_url};
use std::process::ExitCode;

/// Runs Seaway's schema migrations on the primary.
#[derive(Debug, Parser)]
#[command(name = "migration", version, about)]
struct Cli {
    /// The database to migrate (never a read replica).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations (the default).
    Up {
        /// How many to apply; all when absent.
        #[arg(short, long)]
        num: Option<u32>,
    },
    /// Roll back applied migrations.
    Down {
        /// How many to roll back.
        #[arg(short, long, default_value_t = 1)]
        num: u32,
    },
    /// Show which migrations are applied.
    Status,
    /// Drop every table, then apply all migrations.
    Fresh,
    /// Roll back all migrations, then apply them again.
    Refresh,
    /// Roll back all migrations.
    Reset,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let url = cli.database_url;
    let db = match connect_primary(&url).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("migration: {e}");
            return ExitCode::from(2);
        }
    };
    let shown = redact_url(&url);
    let result = match cli.command.unwrap_or(Command::Up { num: None }) {
        Command::Up { num } => Migrator::up(&db, num).await,
        Command::Down { num } => Migrator::down(&db, Some(num)).await,
        Command::Status => print_status(&db).await,
        Command::Fresh => Migrator::fresh(&db).await,
        Command::Refresh => Migrator::refresh(&db).await,
        Command::Reset => Migrator::reset(&db).await,
    };
    match result {
        Ok(()) => {
            println!("migration: done on {shown}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migration: failed on {shown}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn print_status(db: &sea_orm::DatabaseConnection) -> Result<(), migration::DbErr> {
    for m in Migrator::get_migration_with_status(db).await? {
        println!("{}\t{}", m.name(), m.status());
    }
    Ok(())
}
