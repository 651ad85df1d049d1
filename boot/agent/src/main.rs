//! `netdeploy-agent`: see `netdeploy-agent --help` and the crate documentation.

use std::process::ExitCode;

use netdeploy_agent::cli::{self, Command};
use netdeploy_agent::{agent, image, multicast, verify};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = match cli::parse(&args) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            0
        }
        Ok(Command::Version) => {
            println!("netdeploy-agent {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::Verify { file, sha256 }) => verify::run(&file, &sha256),
        Ok(Command::Capture { source, out }) => image::cli::capture(&source, &out),
        Ok(Command::ApplyImage {
            from,
            sha256,
            size,
            target,
        }) => image::cli::apply(&from, &sha256, &size, &target),
        Ok(Command::MulticastApply {
            server,
            sha256,
            size,
            target,
            group,
            interface,
        }) => multicast::cli::run(
            &server,
            &sha256,
            &size,
            &target,
            &group,
            interface.as_deref(),
        ),
        Ok(Command::Run(flags)) => agent::run(&flags),
        Err(e) => {
            eprintln!("netdeploy-agent: {e}");
            2
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
