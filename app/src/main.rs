//! The service binary: `serve` (the default), `migrate`, `seed`.

use app::{AppConfig, seed};
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use std::process::ExitCode;

/// jemalloc instead of glibc's allocator: under the load benchmark glibc's
/// malloc and free took about a tenth of the service's CPU (BENCHMARKS.md, in its git history).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The Seaway example service (shared/API.md).
#[derive(Debug, Parser)]
#[command(name = "seaway-app", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP on LISTEN_ADDR (the default).
    Serve,
    /// Apply pending migrations on the primary (refuses a replica).
    Migrate,
    /// Fill the database with deterministic data.
    Seed {
        /// Profiles to create.
        #[arg(long, default_value_t = 100)]
        profiles: u64,
        /// Stories to create.
        #[arg(long, default_value_t = 1000)]
        stories: u64,
        /// Follows to create.
        #[arg(long, default_value_t = 2000)]
        follows: u64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn init_logging() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    if std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json") {
        fmt().json().with_env_filter(filter).init();
    } else {
        fmt().with_env_filter(filter).init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let config = match AppConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("seaway-app: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let url = &config.seaway.database_url;
            let db = match migration::connect_primary(url).await {
                Ok(db) => db,
                Err(e) => {
                    eprintln!("seaway-app: {e}");
                    return ExitCode::from(2);
                }
            };
            match Migrator::up(&db, None).await {
                Ok(()) => {
                    println!("migrations applied on {}", migration::redact_url(url));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("seaway-app: migration failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Seed {
            profiles,
            stories,
            follows,
            seed: s,
        } => {
            let state = match app::connect(&config).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("seaway-app: {e}");
                    return ExitCode::from(2);
                }
            };
            let plan = seed::SeedPlan {
                profiles,
                stories,
                follows,
                seed: s,
            };
            match seed::run(state.db.primary(), plan).await {
                Ok(took) => {
                    state
                        .db
                        .invalidate(&["profiles", "stories", "follows"])
                        .await;
                    println!(
                        "seeded {profiles} profiles, {stories} stories, {follows} follows in {:.1}s",
                        took.as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("seaway-app: seed failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve => {
            app::routes::ops::install_metrics();
            let state = match app::connect(&config).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("seaway-app: {e}");
                    return ExitCode::from(2);
                }
            };
            let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!(
                        "seaway-app: cannot listen on {} (LISTEN_ADDR): {e}",
                        config.listen_addr
                    );
                    return ExitCode::from(2);
                }
            };
            tracing::info!(addr = %config.listen_addr, config = ?config.seaway, "listening");
            match app::serve(listener, state, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("seaway-app: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
