//! The `vmtel` binary: see `vmtel --help`.

use clap::Parser;

fn main() {
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
