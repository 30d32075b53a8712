//! `gridsight`: the command line. Thin: parses arguments and hands over to the library.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gridsight::{app, config, demo, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: gridsight::Allocator = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gridsight",
    version,
    about = "Real-time heart of a city command centre"
)]
struct Cli {
    /// Log JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon with a config file.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file; print every error with its file, line and field.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Make a new API token: prints it once, and the `[[tokens]]` entry (its SHA-256 only)
    /// to put in the config or the token file.
    NewToken {
        /// Who will hold it (shown in audit fields).
        #[arg(long)]
        name: String,
        /// viewer, operator, reporter or integrator.
        #[arg(long)]
        role: String,
    },
    /// Run a built-in demo city: embedded MQTT broker, store, sensor fleet and reporters.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { file } => match config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} grids, {} cameras, {} sensors, {} tokens, mqtt {})",
                    file.display(),
                    cfg.grids.len(),
                    cfg.cameras.len(),
                    cfg.sensors.len(),
                    cfg.tokens.len(),
                    if cfg.mqtt.is_some() { "on" } else { "off" }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::NewToken { name, role } => {
            let role: config::Role = match toml::Value::String(role.clone()).try_into() {
                Ok(r) => r,
                Err(_) => {
                    eprintln!("--role: `{role}` is not viewer, operator, reporter or integrator");
                    return ExitCode::from(2);
                }
            };
            let token = config::security::new_token();
            println!("# The token (give it to {name}; it is not stored anywhere):");
            println!("# {token}");
            print!("{}", config::security::token_entry(&name, role, &token));
            ExitCode::SUCCESS
        }
        Cmd::Run { config: path } => {
            let cfg = match config::load(&path) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let format = if cli.log_json {
                config::LogFormat::Json
            } else {
                cfg.log.format
            };
            telemetry::init_logging(format, &cfg.log.level);
            run_async(|cancel| async move {
                app::run(cfg, Some(path.clone()), cancel, |b| {
                    println!("gridsight: grpc={} http={}", b.grpc, b.http);
                })
                .await
                .map_err(anyhow::Error::from)
            })
        }
        Cmd::Demo(args) => {
            let format = if cli.log_json {
                config::LogFormat::Json
            } else {
                config::LogFormat::Text
            };
            telemetry::init_logging(format, "info,rumqttd=warn,rumqttd::server::broker=off");
            run_async(
                |cancel| async move { demo::run(args, cancel).await.map_err(anyhow::Error::from) },
            )
        }
    }
}

fn run_async<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let root = CancellationToken::new();
        if let Err(e) = shutdown::watch_signals(root.clone()) {
            eprintln!("cannot watch signals: {e}");
            return ExitCode::FAILURE;
        }
        match f(root).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "gridsight stopped with an error");
                eprintln!("gridsight: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
