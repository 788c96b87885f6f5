//! `pgroute-operator`: reconciles `DatabaseProxy` resources. Not built yet: this binary only says so,
//! and exits non-zero, so nobody mistakes it for a working operator.

fn main() -> std::process::ExitCode {
    eprintln!(
        "pgroute-operator: not implemented yet (see the operator issue); use `pgroute` standalone"
    );
    std::process::ExitCode::from(2)
}
