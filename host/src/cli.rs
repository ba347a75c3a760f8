//! The `slipway` command line.
//!
//! Exit codes (also in the README):
//! 0 success; 1 the deploy or its verification failed; 2 bad usage, manifest
//! or plugin, or a strategy refused the configuration it found (nothing was
//! changed); 3 the deploy lock is held; 4 no Docker engine reachable.

use crate::deploy::{Agent, AgentError};
use crate::journal;
use crate::lock::DeployLock;
use crate::report::{Document, RunReport};
use crate::runtime::{Limits, Runtime};
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_LOCKED: u8 = 3;
pub const EXIT_NO_DOCKER: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "slipway",
    version,
    about = "Deploy a compose stack so that users reliably see the new code"
)]
pub struct Cli {
    /// The manifest.
    #[arg(
        short = 'f',
        long = "manifest",
        global = true,
        default_value = "slipway.toml"
    )]
    pub manifest: PathBuf,
    /// Print a machine-readable report on stdout; logs stay on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Where compiled plugins are cached.
    #[arg(long, global = true, env = "SLIPWAY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print what a deploy would do, in order, touching nothing.
    Plan(Selection),
    /// Deploy surfaces: build, converge each service to its compose
    /// definition (create, replace or skip), run plugin steps, verify.
    Deploy {
        #[command(flatten)]
        selection: Selection,
        /// Seconds to wait for another deploy of this project to finish.
        #[arg(long, default_value_t = 0)]
        lock_wait: u64,
    },
    /// Undo a surface's last deploy: each step's rollback, last step first
    /// (e.g. switch a static site back to its previous release).
    Rollback {
        surface: String,
        /// Seconds to wait for another deploy of this project to finish.
        #[arg(long, default_value_t = 0)]
        lock_wait: u64,
    },
    /// What is live per surface (images, releases, service-worker stamps),
    /// whether it matches the last recorded deploy, and each watcher's last
    /// tick. Exits 1 on drift, a stale container or a failing watcher.
    Status,
    /// Show the audit journal: every deploy, rollback and watchdog action.
    Log {
        /// Only the newest N entries.
        #[arg(long, short = 'n')]
        limit: Option<usize>,
    },
    /// Tick the manifest's watchers on their intervals until SIGTERM/SIGINT.
    Watch {
        /// Watchers to run (all when none are named).
        watchers: Vec<String>,
        /// Tick each watcher once and exit: 0 if every tick succeeded, else 1.
        #[arg(long)]
        once: bool,
        /// Forget what a watcher remembers, including an open circuit breaker.
        #[arg(long, value_name = "WATCHER", conflicts_with = "once")]
        reset: Option<String>,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Print a JSON Schema: of slipway.toml, or of the `--json` report of
    /// plan, deploy and rollback.
    Schema {
        /// Which schema to print.
        #[arg(value_enum, default_value_t = SchemaOf::Manifest)]
        which: SchemaOf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SchemaOf {
    Manifest,
    Report,
}

#[derive(clap::Args, Debug)]
pub struct Selection {
    /// Surfaces to run, e.g. `backend web`.
    pub surfaces: Vec<String>,
    /// Every surface, in dependency order.
    #[arg(long)]
    pub all: bool,
    /// Replace every service's container, even those already on the
    /// desired spec and image.
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Show a plugin's WIT version, imports and declared needs.
    Inspect { file: PathBuf },
    /// Create a Rust plugin crate (a deploy step, with a test) that builds
    /// with `cargo build --release --target wasm32-wasip2`.
    New {
        /// Crate name, e.g. `health-check`.
        name: String,
        /// Where to create it (default: ./NAME); must be new or empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("slipway"))
}

/// What became of stdout.
enum Stdout {
    Open,
    /// The reader went away (`slipway log | head`): it has what it wanted.
    Closed,
    /// Any other write error, reported when the command ends.
    Failed(std::io::Error),
}

static STDOUT: Mutex<Stdout> = Mutex::new(Stdout::Open);

/// Write a command's output to stdout; false once nothing more can be
/// written. Unlike `println!`, a reader that closed early (`slipway plugin
/// inspect … | head`) is no panic: the rest is dropped and the command's
/// exit code stands. Rust ignores SIGPIPE, so the write fails with
/// `BrokenPipe` rather than killing a deploy that is still running.
pub fn out(text: &str) -> bool {
    let mut state = STDOUT.lock().unwrap_or_else(|e| e.into_inner());
    if !matches!(*state, Stdout::Open) {
        return false;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => true,
        Err(e) => {
            *state = match e.kind() {
                std::io::ErrorKind::BrokenPipe => Stdout::Closed,
                _ => Stdout::Failed(e),
            };
            false
        }
    }
}

/// Write to stderr. A closed stderr (`slipway deploy 2>&1 | head`) is
/// ignored: there is nowhere left to say so, and the command goes on.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub async fn run(cli: Cli) -> ExitCode {
    let code = run_command(cli).await;
    match &*STDOUT.lock().unwrap_or_else(|e| e.into_inner()) {
        Stdout::Failed(e) => {
            err(&format!(
                "slipway: cannot write the output to stdout: {e}\n"
            ));
            if code == ExitCode::SUCCESS {
                return ExitCode::from(EXIT_FAILED);
            }
            code
        }
        Stdout::Open | Stdout::Closed => code,
    }
}

async fn run_command(cli: Cli) -> ExitCode {
    let cache_dir = cli.cache_dir.clone().or_else(default_cache_dir);
    let result = match &cli.command {
        Command::Plan(sel) => plan_or_deploy(&cli, cache_dir, sel, None).await,
        Command::Deploy {
            selection,
            lock_wait,
        } => {
            plan_or_deploy(
                &cli,
                cache_dir,
                selection,
                Some(Duration::from_secs(*lock_wait)),
            )
            .await
        }
        Command::Rollback { surface, lock_wait } => {
            rollback(&cli, cache_dir, surface, Duration::from_secs(*lock_wait)).await
        }
        Command::Status => status(&cli, cache_dir).await,
        Command::Log { limit } => log(&cli, *limit),
        Command::Watch {
            watchers,
            once,
            reset,
        } => watch(&cli, cache_dir, watchers, *once, reset.as_deref()).await,
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => inspect(&cli, cache_dir, file).await,
        Command::Plugin {
            command: PluginCommand::New { name, dir },
        } => crate::scaffold::command(name, dir.as_deref(), cli.json),
        Command::Schema { which } => {
            out(&match which {
                SchemaOf::Manifest => crate::manifest::json_schema(),
                SchemaOf::Report => crate::report::json_schema(),
            });
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        let code = match &e {
            AgentError::Manifest(_) | AgentError::Usage(_) => EXIT_USAGE,
            AgentError::Lock(_) => EXIT_LOCKED,
            AgentError::Unreachable(_) => EXIT_NO_DOCKER,
            AgentError::Other(_) => EXIT_FAILED,
        };
        err(&format!("slipway: {e}\n"));
        if cli.json {
            match failed_run(&cli, &e) {
                Some(run) => print_document(&run, code),
                None => {
                    let doc = serde_json::json!({ "ok": false, "error": e.to_string(), "exit_code": code });
                    out(&format!("{doc}\n"));
                }
            }
        }
        ExitCode::from(code)
    })
}

async fn plan_or_deploy(
    cli: &Cli,
    cache_dir: Option<PathBuf>,
    sel: &Selection,
    lock_wait: Option<Duration>,
) -> Result<ExitCode, AgentError> {
    let mut agent = Agent::open(&cli.manifest, cache_dir)?;
    agent.force = sel.force;
    let surfaces = agent.select(&sel.surfaces, sel.all)?;
    if lock_wait.is_some() {
        agent.preflight(&surfaces)?;
    }
    let _lock = match lock_wait {
        Some(wait) => {
            let what = format!("slipway deploy {}", surfaces.join(" "));
            Some(DeployLock::acquire_async(&agent.loaded.state_dir(), &what, wait).await?)
        }
        None => None,
    };
    agent.load_plugins(&surfaces).await?;
    if lock_wait.is_none() {
        for (_, warning) in agent.loaded.unrouted_watches() {
            tracing::warn!("{warning}");
        }
    }
    match agent.connect_docker().await {
        Ok(_) => {}
        // A plan can still say what it would do without an engine.
        Err(AgentError::Unreachable(e)) if lock_wait.is_none() => tracing::warn!("{e}"),
        Err(e) => return Err(e),
    }
    let report = match lock_wait {
        Some(_) => {
            let report = agent.deploy(&surfaces).await;
            journal::record(&agent.loaded.state_dir(), &journal::Entry::of_run(&report));
            report
        }
        None => agent.plan(&surfaces).await,
    };
    Ok(emit(cli, &report))
}

fn emit(cli: &Cli, report: &RunReport) -> ExitCode {
    let code = match (report.ok, report.refused) {
        (true, _) => 0,
        (false, true) => EXIT_USAGE,
        (false, false) => EXIT_FAILED,
    };
    if cli.json {
        print_document(report, code);
    } else {
        err(&report.human());
    }
    ExitCode::from(code)
}

fn print_document(report: &RunReport, exit_code: u8) {
    let doc = Document::new(report, exit_code);
    out(&(serde_json::to_string_pretty(&doc).expect("reports serialize") + "\n"));
}

/// A report for a plan, deploy or rollback that stopped before any surface
/// ran, so CI always gets a document of the one schema.
fn failed_run(cli: &Cli, e: &AgentError) -> Option<RunReport> {
    let command = match &cli.command {
        Command::Plan(_) => "plan",
        Command::Deploy { .. } => "deploy",
        Command::Rollback { .. } => "rollback",
        _ => return None,
    };
    // The manifest may be what failed; its project name is still useful.
    let project = std::fs::read_to_string(&cli.manifest)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("project")?.get("name")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    Some(RunReport::failed(command, project, e.to_string()))
}

async fn rollback(
    cli: &Cli,
    cache_dir: Option<PathBuf>,
    surface: &str,
    lock_wait: Duration,
) -> Result<ExitCode, AgentError> {
    let mut agent = Agent::open(&cli.manifest, cache_dir)?;
    let surfaces = agent.select(&[surface.to_owned()], false)?;
    agent.preflight_rollback(&surfaces)?;
    let what = format!("slipway rollback {surface}");
    let _lock = DeployLock::acquire_async(&agent.loaded.state_dir(), &what, lock_wait).await?;
    agent.load_plugins(&surfaces).await?;
    agent.connect_docker().await?;
    let report = agent.rollback(surface).await;
    journal::record(&agent.loaded.state_dir(), &journal::Entry::of_run(&report));
    // Only once the journal holds it: a crash in between leaves a record
    // whose rerun finds every service already back, and changes nothing.
    if report.ok {
        journal::PendingRollback::clear(&agent.loaded.state_dir(), surface);
    }
    Ok(emit(cli, &report))
}

async fn watch(
    cli: &Cli,
    cache_dir: Option<PathBuf>,
    watchers: &[String],
    once: bool,
    reset: Option<&str>,
) -> Result<ExitCode, AgentError> {
    let mut agent = Agent::open(&cli.manifest, cache_dir)?;
    if let Some(watcher) = reset {
        agent.load_watchers(&[watcher.to_owned()]).await?;
        crate::watch::reset(&agent.loaded.state_dir(), watcher)
            .map_err(|e| AgentError::Other(e.into()))?;
        tracing::info!("watch {watcher}: state reset; it starts afresh on its next tick");
        return Ok(ExitCode::SUCCESS);
    }
    let watchers = agent.load_watchers(watchers).await?;
    for (watcher, warning) in agent.loaded.unrouted_watches() {
        if watchers.iter().any(|w| w == watcher) {
            tracing::warn!("{warning}");
        }
    }
    if watchers.is_empty() {
        return Err(AgentError::Usage(
            "the manifest defines no [watch.*] watchers".into(),
        ));
    }
    agent.connect_docker().await?;
    if once {
        let ok = crate::watch::once(&agent, &watchers).await?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_FAILED)
        });
    }
    crate::watch::run(&agent, &watchers).await?;
    Ok(ExitCode::SUCCESS)
}

fn log(cli: &Cli, limit: Option<usize>) -> Result<ExitCode, AgentError> {
    let loaded = crate::manifest::Loaded::load(&cli.manifest)?;
    let state_dir = loaded.state_dir();
    let (entries, torn) =
        journal::read(&state_dir).map_err(|e| AgentError::Other(anyhow::anyhow!(e)))?;
    let shown = &entries[entries.len() - limit.unwrap_or(entries.len()).min(entries.len())..];
    for entry in shown {
        let line = match cli.json {
            true => format!("{entry}\n"),
            false => format!("{}\n", journal::human(entry)),
        };
        if !out(&line) {
            break;
        }
    }
    if torn > 0 {
        tracing::warn!(
            "{torn} line(s) of {} are incomplete (a crash mid-write) and were skipped",
            journal::path(&state_dir).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(cli: &Cli, cache_dir: Option<PathBuf>) -> Result<ExitCode, AgentError> {
    let mut agent = Agent::open(&cli.manifest, cache_dir)?;
    let docker = agent.connect_docker().await?;
    let status = crate::status::collect(&agent, &docker).await?;
    if cli.json {
        out(&(serde_json::to_string_pretty(&status).expect("status serializes") + "\n"));
    } else {
        out(&status.human());
    }
    Ok(if status.unhealthy() {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Serialize)]
struct Inspection {
    file: String,
    sha256: String,
    world: String,
    wit_package: String,
    name: String,
    version: String,
    description: String,
    /// Whether the step replaces the surface's containers itself.
    replaces_services: bool,
    needs: Vec<String>,
    /// The manifest grant keys its imports can use (`docker`, `probe`, `fs`).
    grants: Vec<String>,
    /// The commands it declares for `docker.exec`, each matched whole; the
    /// host refuses any other.
    exec: Vec<Vec<String>>,
    /// The narrowed `grants.docker` entry that allows exactly those, with
    /// the service left for the operator to fill in.
    exec_grant: Option<String>,
    imports: Vec<String>,
}

async fn inspect(
    cli: &Cli,
    cache_dir: Option<PathBuf>,
    file: &Path,
) -> Result<ExitCode, AgentError> {
    let runtime = Runtime::new(cache_dir)?;
    let plugin = runtime
        .load("inspect", file, None, Limits::default())
        .await
        .map_err(|e| AgentError::Usage(format!("{e:#}")))?;
    // A component imports only the interfaces it calls, so its imports say
    // which grants can matter; its needs say what to put in them.
    const GRANTS: [(&str, &str, &str); 3] = [
        ("docker", "slipway:plugin/docker@", "[\"<service>\", …]"),
        ("probe", "slipway:plugin/probe@", "[\"<host>:<port>\", …]"),
        (
            "fs",
            "wasi:filesystem/preopens@",
            "[{ host = \"<dir>\", guest = \"/<path>\", mode = \"ro\" }, …]",
        ),
    ];
    let used: Vec<_> = GRANTS
        .iter()
        .filter(|(_, import, _)| plugin.imports.iter().any(|i| i.starts_with(import)))
        .collect();
    let doc = Inspection {
        file: file.display().to_string(),
        sha256: plugin.sha256.clone(),
        world: plugin.role.world().to_owned(),
        wit_package: format!("slipway:plugin@{}", plugin.wit_version),
        name: plugin.info.name.clone(),
        version: plugin.info.version.clone(),
        description: plugin.info.description.clone(),
        replaces_services: plugin.info.replaces_services,
        needs: plugin.info.needs.clone(),
        grants: used.iter().map(|(key, _, _)| key.to_string()).collect(),
        exec: plugin.info.exec.clone(),
        exec_grant: exec_grant(&plugin.info.exec),
        imports: plugin.imports.clone(),
    };
    if cli.json {
        out(&(serde_json::to_string_pretty(&doc).expect("inspection serializes") + "\n"));
    } else {
        out(&inspection_text(&doc, &used));
    }
    Ok(ExitCode::SUCCESS)
}

/// `slipway plugin inspect` for people.
/// `{ service = "<service>", exec = [["nginx", "-t"], …] }` for the
/// commands a plugin declares.
fn exec_grant(declared: &[Vec<String>]) -> Option<String> {
    if declared.is_empty() {
        return None;
    }
    let argv = |a: &Vec<String>| toml::Value::Array(a.iter().map(|s| s.as_str().into()).collect());
    let exec = toml::Value::Array(declared.iter().map(argv).collect());
    Some(format!("{{ service = \"<service>\", exec = {exec} }}"))
}

fn inspection_text(doc: &Inspection, used: &[&(&str, &str, &str)]) -> String {
    // Writing to a String cannot fail.
    let mut t = String::new();
    let _ = writeln!(t, "{} {} — {}", doc.name, doc.version, doc.description);
    let _ = writeln!(t, "file     {}", doc.file);
    let _ = writeln!(t, "sha256   {}", doc.sha256);
    let _ = writeln!(t, "world    {} ({})", doc.world, doc.wit_package);
    if doc.replaces_services {
        t.push_str("replaces the surface's containers itself (the host only builds them)\n");
    }
    t.push_str("needs, in the plugin's words (the manifest decides what is granted)\n");
    for need in &doc.needs {
        let _ = writeln!(t, "  {need}");
    }
    t.push_str("grants its imports can use\n");
    if used.is_empty() {
        t.push_str("  none: it needs no grants\n");
    }
    for (key, _, example) in used {
        let _ = writeln!(t, "  grants.{key:<7} {example}");
    }
    if let Some(grant) = &doc.exec_grant {
        t.push_str(
            "exec: the commands it runs (the host refuses any other); grant only those
",
        );
        let _ = writeln!(t, "  grants.docker  [{grant}, …]");
    }
    t.push_str("imports\n");
    for import in &doc.imports {
        let _ = writeln!(t, "  {import}");
    }
    t.push_str("manifest (make the path relative to slipway.toml)\n");
    let _ = writeln!(t, "  [plugins.{}]", doc.name);
    let _ = writeln!(t, "  path = {}", toml::Value::from(doc.file.as_str()));
    let _ = writeln!(t, "  sha256 = \"{}\"", doc.sha256);
    t
}
