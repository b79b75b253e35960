//! syncctl: the operator CLI of pd-sfdc-sync. `main` parses, runs, and turns a failure into its
//! message (stderr, or a JSON document on stdout with --json) and exit code.

use std::process::ExitCode;

use clap::Parser;
use syncctl::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.globals.json;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&failure.to_json()).expect("serialises"));
            } else {
                eprintln!("error: {failure}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
