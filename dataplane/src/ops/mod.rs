//! Operations on a running proxy: PAUSE/RESUME (the transaction gate), RELOAD (what a new
//! configuration may change while running) and the shutdown phase. The `Proxy` methods of the same
//! names wire these to pools and sessions; SIGUSR1/SIGUSR2/SIGHUP/SIGTERM in `main.rs` and the admin
//! console call those methods.

mod gate;
mod reload;
mod source;

pub use gate::{Gate, InFlightGuard, Phase, ShuttingDown};
pub use reload::{plan, ReloadError, ReloadReport, RESTART_ONLY};
pub use source::ConfigSource;
