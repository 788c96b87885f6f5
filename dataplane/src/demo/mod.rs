//! `pgroute demo`: the embedded default, written next.

use std::process::ExitCode;

use crate::cli::DemoArgs;

pub async fn run(_args: DemoArgs) -> ExitCode {
    ExitCode::from(1)
}
