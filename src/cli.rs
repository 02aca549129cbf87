//! Command line: `farmlb run`, `farmlb check-config`, `farmlb manager`, `farmlb --version`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The version line: crate version and the git revision it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FARMLB_GIT_REV"), ")");

#[derive(Debug, Parser)]
#[command(name = "farmlb", version = VERSION, about = "DPDK userspace load balancer for server farms")]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `farmlb=debug`.
    #[arg(long, global = true, env = "FARMLB_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the EAL, bring the ports up and forward until stopped.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Stop cleanly after this long (e.g. `2s`, `500ms`, `1m`).
        #[arg(long, value_parser = parse_duration)]
        run_for: Option<Duration>,
        /// Write the final counters as JSON to this file when stopping.
        #[arg(long)]
        stats_out: Option<PathBuf>,
    },
    /// Validate a configuration file and exit (0: valid, 1: invalid).
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Print the server status table and the farm units of a running farmlb.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the admin API's JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Operate on one server of a running farmlb.
    Server {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        op: ServerOp,
    },
    /// Make a running farmlb re-read its config file (a bad file changes nothing).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Run the service manager: collect load feedback, compute weights and
    /// push an epoch to every node each interval (US 6,970,913).
    Manager {
        /// Manager configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Only check the configuration and exit (0: valid, 1: invalid).
        #[arg(long)]
        check: bool,
        /// Stop cleanly after this long (e.g. `30s`).
        #[arg(long, value_parser = parse_duration)]
        run_for: Option<Duration>,
    },
}

/// Where the admin API of the running farmlb is.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The admin API address (`[admin] listen` of the running farmlb).
    #[arg(
        long,
        global = true,
        env = "FARMLB_ADMIN",
        default_value = "127.0.0.1:9190"
    )]
    pub admin: String,
    /// Bearer token (`[admin] token`), needed when farmlb listens beyond loopback.
    #[arg(long, global = true, env = "FARMLB_TOKEN")]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServerOp {
    /// No new flows; existing ones finish.
    Drain { name: String },
    /// Back in service (when healthy).
    Enable { name: String },
    /// Out of service: its sub-farm units fail over to their backups.
    Disable { name: String },
    /// Set the scheduling weight.
    Weight { name: String, weight: u32 },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration (e.g. 2s, 500ms): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_arguments() {
        let cli = Cli::try_parse_from([
            "farmlb",
            "run",
            "--config",
            "a.toml",
            "--run-for",
            "1500ms",
            "--stats-out",
            "s.json",
        ])
        .unwrap();
        match cli.command {
            Command::Run {
                config,
                run_for,
                stats_out,
            } => {
                assert_eq!(config, PathBuf::from("a.toml"));
                assert_eq!(run_for, Some(Duration::from_millis(1500)));
                assert_eq!(stats_out, Some(PathBuf::from("s.json")));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            Cli::try_parse_from(["farmlb", "run", "--config", "a.toml", "--run-for", "soon"])
                .is_err()
        );
    }

    #[test]
    fn manager_arguments() {
        let cli =
            Cli::try_parse_from(["farmlb", "manager", "-c", "m.toml", "--run-for", "3s"]).unwrap();
        match cli.command {
            Command::Manager {
                config,
                check,
                run_for,
            } => {
                assert_eq!(config, PathBuf::from("m.toml"));
                assert!(!check);
                assert_eq!(run_for, Some(Duration::from_secs(3)));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
