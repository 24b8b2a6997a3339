//! meshctl: the x0tta6bl4 agent and its command-line tool.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use mesh_ctl::{agent, dataplane::explain};

#[derive(Parser)]
#[command(
    name = "meshctl",
    version,
    about = "x0tta6bl4 self-healing mesh data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: attach the XDP data plane and install routes until SIGINT/SIGTERM.
    Agent {
        /// The agent's TOML configuration.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Only validate the configuration (and the interfaces it names), then exit.
        #[arg(long)]
        check_config: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent {
            config,
            check_config: true,
        } => agent::prepare(&config).map(|(c, t)| {
            println!(
                "{}: valid: node `{}`, {} interfaces, {} groups, {} IPv4 and {} IPv6 routes",
                config.display(),
                c.node,
                t.ifaces.len(),
                t.groups.len(),
                t.v4.len(),
                t.v6.len()
            );
        }),
        Command::Agent { config, .. } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(agent::run(&config))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", explain(&e));
            ExitCode::FAILURE
        }
    }
}
