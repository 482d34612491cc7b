//! The `vmtel` binary: see `vmtel --help`.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = vmtel::cli::Cli::parse();
    let code = match vmtel::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmtel: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
