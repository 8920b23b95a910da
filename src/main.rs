//! The `petition-gateway` command: `run`, `check`, `replay`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "petition-gateway",
    version,
    about = "Integration gateway for citizens' petitions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: HTTP intake, dispatcher, Kafka.
    Run {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// Validate the configuration, connectors, schemas and responsibility list.
    Check {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// Work with connector files.
    Connector {
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Print the petitions on the department and triage topics (from the beginning).
    Watch {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Stop once this many petitions were printed; exit status 1 when fewer arrived
        /// within --seconds.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Publish a JSONL file in the sample's format onto petitions.inbound, through the
    /// same mapping and validation as live intake, in file order.
    Import {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// JSONL input: one {"channel", "payload" | "payload_xml", "at"?} per line.
        input: PathBuf,
        /// Petitions per second (default: as fast as Kafka acknowledges).
        #[arg(long)]
        rate: Option<u32>,
    },
    /// Map, normalize and route a JSONL file in-process (no Kafka, no HTTP).
    Replay {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// JSONL input: one {"channel", "payload"} per line.
        input: PathBuf,
        /// Where to write the JSONL results (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The order to decide the lines in: file, reported (by the citizen's reported
        /// time), reverse, or shuffle-hours:N[:SEED] (each line delayed by a random time
        /// under N hours after its arrival; seed 1 by default).
        #[arg(long, default_value = "file")]
        order: petition_gateway::replay::ReplayOrder,
        /// Act as the command center: assign each new case the decision got wrong to its
        /// line's label.department right after the decision, and let the learned model
        /// learn from it.
        #[arg(long)]
        center: bool,
    },
    /// What the router learned from the center: examples and the words that weigh most
    /// per department (JSON), read from the examples topic; or forget one case's example.
    Learned {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// Forget the example of this case (every instance unlearns it).
        #[arg(long)]
        forget: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Print the petition(s) a native payload becomes, or every error with its path.
    /// No Kafka, no HTTP. Exit status 1 when any item is rejected.
    Test {
        /// The connector file, e.g. connectors/hotline.toml.
        definition: PathBuf,
        /// A payload as the channel sends it (or, for a poll connector, one page).
        input: PathBuf,
        #[arg(long, default_value = "config/gazetteer.toml")]
        gazetteer: PathBuf,
        /// Also show the routing decision with this responsibility list.
        #[arg(long, default_value = "config/responsibility.toml")]
        responsibility: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .finish();
    tracing::subscriber::set_global_default(subscriber)?;
    // rdkafka logs through `log`: an unreachable broker becomes the readiness probe's one
    // line instead of every client's error lines every half second.
    petition_gateway::kafka::health::QuietBrokerTransport::install()?;
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match petition_gateway::check::check(&config) {
            Ok(summary) => {
                println!("{summary}");
                Ok(())
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        Command::Connector {
            command:
                ConnectorCommand::Test {
                    definition,
                    input,
                    gazetteer,
                    responsibility,
                },
        } => {
            let results = match petition_gateway::connector_test::connector_test(
                &definition,
                &input,
                &gazetteer,
                responsibility.as_deref(),
            ) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            };
            let rejected = results.iter().filter(|r| r.get("errors").is_some()).count();
            for r in &results {
                println!("{}", serde_json::to_string_pretty(r)?);
            }
            eprintln!(
                "{} item(s): {} accepted, {rejected} rejected",
                results.len(),
                results.len() - rejected
            );
            if rejected > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Replay {
            config,
            input,
            output,
            order,
            center,
        } => {
            let loaded = petition_gateway::config::load(&config)?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&input)
                    .with_context(|| format!("opening {}", input.display()))?,
            );
            let options = petition_gateway::replay::ReplayOptions { order, center };
            let stats = match output {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    petition_gateway::replay::replay_with(
                        loaded,
                        reader,
                        std::io::BufWriter::new(file),
                        options,
                    )?
                }
                None => petition_gateway::replay::replay_with(
                    loaded,
                    reader,
                    std::io::stdout().lock(),
                    options,
                )?,
            };
            eprintln!(
                "replayed {} line(s): {} accepted, {} rejected",
                stats.lines, stats.accepted, stats.rejected
            );
            Ok(())
        }
        Command::Learned { config, forget } => {
            let loaded = petition_gateway::config::load(&config)?;
            let settings = &loaded.settings;
            if let Some(case_id) = forget {
                petition_gateway::dispatch::learning::stream::forget(
                    &settings.kafka,
                    &settings.topics,
                    &case_id,
                )?;
                eprintln!("the example of case {case_id} is forgotten");
                return Ok(());
            }
            let list =
                petition_gateway::dispatch::reload::fixed(loaded.responsibility.clone(), "learned");
            let learning = &settings.routing.learning;
            let learner = petition_gateway::dispatch::learning::stream::load(
                &settings.kafka,
                &settings.topics,
                learning.settings(),
                &list,
                learning.seed.as_deref(),
            )?;
            let report = serde_json::json!({
                "model_version": learner.version(),
                "examples": learner.len(),
                "departments": learner.summary(),
                "learned": learner.examples().collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Import {
            config,
            input,
            rate,
        } => {
            let loaded = petition_gateway::config::load(&config)?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&input)
                    .with_context(|| format!("opening {}", input.display()))?,
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let stats = runtime.block_on(petition_gateway::import::import(loaded, reader, rate))?;
            println!("{}", serde_json::to_string(&stats)?);
            if stats.rejected > 0 {
                anyhow::bail!("{} line(s) rejected (see above)", stats.rejected);
            }
            Ok(())
        }
        Command::Watch {
            config,
            seconds,
            count,
        } => {
            let loaded = petition_gateway::config::load(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let printed = runtime.block_on(petition_gateway::watch::watch(
                &loaded.settings,
                &loaded.responsibility,
                std::time::Duration::from_secs(seconds),
                count,
                std::io::stdout().lock(),
            ))?;
            eprintln!("{printed} dispatched petition(s)");
            if let Some(expected) = count.filter(|n| printed < *n) {
                anyhow::bail!("only {printed} of the {expected} expected petition(s) arrived within {seconds} s");
            }
            Ok(())
        }
        Command::Run { config } => {
            let loaded = petition_gateway::config::load(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let cancel = CancellationToken::new();
                let gateway = petition_gateway::server::start(loaded, cancel.clone()).await?;
                tokio::spawn(shutdown_on_signal(cancel));
                gateway.wait().await;
                tracing::info!("stopped");
                anyhow::Ok(())
            })
        }
    }
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    cancel.cancel();
}
