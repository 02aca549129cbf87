//! `farm-server`: one server of a farm behind farmlb.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use farm_server::app::{AppConfig, Shared};
use farm_server::server::serve;
use tracing_subscriber::EnvFilter;

/// A shop server for a farmlb farm: sessions in a local cache, written through
/// to a shared database (SQLite file or PostgreSQL).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Server name, sent in the X-Farm-Server header and shown on pages.
    #[arg(long, env = "FARM_SERVER_NAME")]
    name: String,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080", env = "FARM_SERVER_LISTEN")]
    listen: SocketAddr,
    /// URL of this server's sub-farm unit on farmlb (e.g. http://198.18.1.101/);
    /// every page links there so the client's next request comes back here.
    #[arg(long, env = "FARM_SERVER_SUB_FARM_URL")]
    sub_farm_url: String,
    /// Shared database: sqlite:/path/file.db, postgres://user@host/db, or a
    /// key=value string such as "host=/run/postgresql dbname=farm".
    #[arg(long, env = "FARM_SERVER_DB")]
    db: String,
    /// Domain attribute for the session cookies (e.g. shop.example), so the main
    /// farm unit and every sub-farm unit see the same cookies. Default: host-only.
    #[arg(long, env = "FARM_SERVER_COOKIE_DOMAIN")]
    cookie_domain: Option<String>,
    /// Most sessions kept in the local cache.
    #[arg(long, default_value_t = 100_000)]
    cache_capacity: usize,
    /// Runtime worker threads; 1 runs everything on the main thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let config = match AppConfig::new(
        &cli.name,
        &cli.sub_farm_url,
        cli.cookie_domain.as_deref(),
        cli.cache_capacity,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("farm-server: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("farm-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("farm-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, config: AppConfig) -> Result<(), String> {
    let store = farm_server::store::open(&cli.db)
        .await
        .map_err(|e| format!("database: {e}"))?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let shared = Shared::new(config, store);
    tracing::info!(
        name = %shared.config.name,
        instance = %shared.instance,
        listen = %local,
        sub_farm_url = %shared.config.sub_farm_url,
        database = shared.store.kind(),
        "farm-server listening"
    );
    serve(listener, shared, shutdown_signal())
        .await
        .map_err(|e| format!("server: {e}"))?;
    tracing::info!("farm-server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
