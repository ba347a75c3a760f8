use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = slipway::cli::Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("slipway={level},warn")));
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(slipway::progress::log_writer)
        .with_ansi(color)
        .with_target(false)
        // Its report of a failed write would `eprintln!`, which panics on
        // a closed stderr (`slipway deploy 2>&1 | head`).
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            slipway::cli::err(&format!("slipway: cannot start the async runtime: {e}\n"));
            return ExitCode::from(slipway::cli::EXIT_FAILED);
        }
    };
    runtime.block_on(slipway::cli::run(cli))
}
