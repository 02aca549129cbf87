//! `farm-server`: one server of a farm behind farmlb.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use farm_server::app::{AppConfig, Shared};
use farm_server::replication::{self, Mode, PeerSpec, ReplicationConfig};
use farm_server::server::{serve, spawn_repair};
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
    /// Without it the server needs --number: sessions then live only in the
    /// servers' memory, each on its primary and its secondary.
    #[arg(long, env = "FARM_SERVER_DB")]
    db: Option<String>,
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
    /// This server's number (1..=999, farmlb's `[[server]] number`): turns on
    /// session replication (primary and secondary, route and version cookies).
    #[arg(long, env = "FARM_SERVER_NUMBER")]
    number: Option<u16>,
    /// A peer: NAME=NUMBER@HOST:PORT (repeat for each other server).
    #[arg(long = "peer", value_name = "NAME=NUMBER@HOST:PORT")]
    peers: Vec<String>,
    /// A file of peers, one `NAME NUMBER HOST:PORT` per line (`#` comments);
    /// the line with this server's own number is skipped.
    #[arg(long, env = "FARM_SERVER_PEERS_FILE")]
    peers_file: Option<std::path::PathBuf>,
    /// A file whose bytes (a trailing newline removed) are the secret shared by
    /// all servers to sign replication requests (at least 16 bytes).
    #[arg(long, env = "FARM_SERVER_REPLICATION_SECRET_FILE")]
    replication_secret_file: Option<std::path::PathBuf>,
    /// The shared secret itself (prefer the file: the command line is visible to ps).
    #[arg(long, env = "FARM_SERVER_REPLICATION_SECRET", hide_env_values = true)]
    replication_secret: Option<String>,
    /// `ack`: answer the client after the secondary acknowledged the change;
    /// `async`: answer at once and replicate in the background.
    #[arg(long, default_value = "ack", env = "FARM_SERVER_REPLICATION")]
    replication: String,
    /// Name of the route cookie (farmlb's `route_cookie`).
    #[arg(long, default_value = "route", env = "FARM_SERVER_ROUTE_COOKIE")]
    route_cookie: String,
    /// Milliseconds between version comparisons with the secondaries.
    #[arg(long, default_value_t = 1000)]
    repair_interval_ms: u64,
    /// Milliseconds to wait for a peer's answer.
    #[arg(long, default_value_t = 1000)]
    peer_timeout_ms: u64,
    /// A farm unit this server serves, for `GET /load`: NAME, or NAME=HOST to
    /// count requests whose Host header is HOST (repeat; the first takes the
    /// rest). Default: one unit named `default`.
    #[arg(long = "unit", value_name = "NAME[=HOST]")]
    units: Vec<String>,
    /// Requests per second this server is meant to take (`GET /load`'s
    /// capacity; farmlb's manager reads rate / capacity as its utilisation).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
}

/// The replication settings from the command line, if `--number` is given.
fn replication_config(cli: &Cli) -> Result<Option<ReplicationConfig>, String> {
    let Some(number) = cli.number else {
        if !cli.peers.is_empty() || cli.peers_file.is_some() {
            return Err("--peer and --peers-file need --number".into());
        }
        return Ok(None);
    };
    let mut peers = Vec::new();
    if let Some(path) = &cli.peers_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        peers = replication::parse_peers_file(&text, number).map_err(|e| e.to_string())?;
    }
    for p in &cli.peers {
        peers.push(PeerSpec::parse(p).map_err(|e| e.to_string())?);
    }
    let mut secret = match (&cli.replication_secret_file, &cli.replication_secret) {
        (Some(path), _) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        (None, Some(s)) => s.as_bytes().to_vec(),
        (None, None) => Vec::new(),
    };
    if secret.last() == Some(&b'\n') {
        secret.pop();
    }
    let mode: Mode = cli
        .replication
        .parse()
        .map_err(|e: replication::ReplicationConfigError| e.to_string())?;
    let mut config = ReplicationConfig::new(number, peers, secret, mode, &cli.route_cookie)
        .map_err(|e| e.to_string())?;
    if cli.repair_interval_ms == 0 || cli.peer_timeout_ms == 0 {
        return Err("--repair-interval-ms and --peer-timeout-ms must be above 0".into());
    }
    config.repair_interval = Duration::from_millis(cli.repair_interval_ms);
    config.timeout = Duration::from_millis(cli.peer_timeout_ms);
    Ok(Some(config))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut config = match AppConfig::new(
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
    let mut units = Vec::new();
    for u in &cli.units {
        match farm_server::load::UnitSpec::parse(u) {
            Ok(spec)
                if units
                    .iter()
                    .all(|x: &farm_server::load::UnitSpec| x.name != spec.name) =>
            {
                units.push(spec)
            }
            Ok(spec) => {
                eprintln!("farm-server: --unit {} given twice", spec.name);
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("farm-server: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if !units.is_empty() {
        config.load.units = units;
    }
    config.load.capacity = cli.capacity;
    let replication = match replication_config(&cli) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("farm-server: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.db.is_none() && replication.is_none() {
        eprintln!("farm-server: give --db, or --number (and --peer) to keep sessions in the servers' memory");
        return ExitCode::from(2);
    }
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
    match runtime.block_on(run(cli, config, replication)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("farm-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    cli: Cli,
    config: AppConfig,
    replication: Option<ReplicationConfig>,
) -> Result<(), String> {
    let store = match &cli.db {
        Some(db) => Some(
            farm_server::store::open(db)
                .await
                .map_err(|e| format!("database: {e}"))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let shared = match (replication, store) {
        (Some(r), store) => Shared::replicating(config, store, r),
        (None, Some(store)) => Shared::new(config, store),
        (None, None) => return Err("no database and no replication".into()),
    };
    if let Some(r) = &shared.replication {
        tracing::info!(
            number = r.config.number,
            peers = r.config.peers.len(),
            mode = r.config.mode.as_str(),
            route_cookie = %r.config.route_cookie,
            "replicating sessions"
        );
    }
    let _repair = spawn_repair(&shared);
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
