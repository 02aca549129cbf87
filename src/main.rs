use std::process::ExitCode;

use clap::Parser;
use farmlb::cli::{AdminArgs, Cli, Command, ServerOp};
use farmlb::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} ports, {} servers, {} farm units, {} sub-farm units, {} workers)",
                    file.display(),
                    c.ports.len(),
                    c.servers.len(),
                    c.farm_units.len(),
                    c.sub_farm_units.len(),
                    c.worker_lcores.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Status { admin, json } => admin_call(&admin, |c| {
            if json {
                c.call("GET", "/status", None)
            } else {
                c.status()
                    .map(|s| farmlb::control::client::format_status(&s))
            }
        }),
        Command::Server { admin, op } => admin_call(&admin, |c| {
            let (path, method, body) = match &op {
                ServerOp::Drain { name } => (format!("/servers/{name}/drain"), "POST", None),
                ServerOp::Enable { name } => (format!("/servers/{name}/enable"), "POST", None),
                ServerOp::Disable { name } => (format!("/servers/{name}/disable"), "POST", None),
                ServerOp::Weight { name, weight } => (
                    format!("/servers/{name}/weight"),
                    "PUT",
                    Some(format!("{{\"weight\": {weight}}}")),
                ),
            };
            c.call(method, &path, body.as_deref())?;
            c.status()
                .map(|s| farmlb::control::client::format_status(&s))
        }),
        Command::Reload { admin } => admin_call(&admin, |c| c.call("POST", "/reload", None)),
        Command::Manager {
            config,
            check,
            run_for,
        } => manager(&config, check, run_for),
        Command::Run {
            config,
            run_for,
            stats_out,
        } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            run(cfg, run_for, stats_out)
        }
    }
}

#[cfg(feature = "dpdk")]
fn run(
    cfg: Config,
    run_for: Option<std::time::Duration>,
    stats_out: Option<std::path::PathBuf>,
) -> ExitCode {
    match farmlb::dataplane::run(&cfg, run_for, stats_out.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "dpdk"))]
fn run(
    _cfg: Config,
    _run_for: Option<std::time::Duration>,
    _stats_out: Option<std::path::PathBuf>,
) -> ExitCode {
    eprintln!("error: this farmlb was built without the `dpdk` feature; `run` needs it");
    ExitCode::FAILURE
}

/// `farmlb manager`: checks the config, then runs until stopped.
fn manager(file: &std::path::Path, check: bool, run_for: Option<std::time::Duration>) -> ExitCode {
    let cfg = match farmlb::manager::ManagerConfig::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if check {
        println!(
            "{}: ok ({} nodes, {} servers, {} units)",
            file.display(),
            cfg.nodes.len(),
            cfg.servers.len(),
            cfg.units.len()
        );
        return ExitCode::SUCCESS;
    }
    match farmlb::manager::run(cfg, run_for) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one admin API interaction and prints its answer (or the error).
fn admin_call(
    args: &AdminArgs,
    f: impl FnOnce(
        &farmlb::control::client::AdminClient,
    ) -> Result<String, farmlb::control::client::ClientError>,
) -> ExitCode {
    let client = farmlb::control::client::AdminClient::new(&args.admin, args.token.clone());
    match f(&client) {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
