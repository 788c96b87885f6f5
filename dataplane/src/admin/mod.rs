//! The admin console: a client that logs in to the virtual database `admin.database` (`pgroute`) gets
//! no backend; its simple queries are console commands answered here, PgBouncer-compatible
//! (`SHOW POOLS|STATS|CLIENTS|SERVERS|DATABASES|CONFIG|LISTS|VERSION|STATE|HELP`, `PAUSE`, `RESUME`,
//! `RELOAD`, `SHUTDOWN`) plus pgroute's own (`SHOW REPLICAS|ROUTES`, `DRAIN`, `UNDRAIN`).
//!
//! Socket-free: [`Console::query`] takes a query's text and appends the answer's messages to a buffer,
//! so commands and report formats are tested without a network; `session::console` moves the frames.
//! Reports read the same atomics and registries the data path writes; nothing here runs on the data
//! path.

mod command;
mod replicas;
mod show;
mod sockets;
mod table;

use std::sync::Arc;

use bytes::BytesMut;
use pgroute_protocol::backend;

pub use command::{parse, Command, ParseError, Show};
pub use table::{Cell, Table, Type};

use crate::config::{AdminConfig, BackendAddr};
use crate::proxy::Proxy;

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `admin.users`: every command.
    Admin,
    /// `admin.stats_users`: `SHOW` only.
    Stats,
}

impl Access {
    /// The access `user` has, `None` if it may not use the console.
    pub fn of(config: &AdminConfig, user: &str) -> Option<Access> {
        if config.users.iter().any(|u| u == user) {
            Some(Access::Admin)
        } else if config.stats_users.iter().any(|u| u == user) {
            Some(Access::Stats)
        } else {
            None
        }
    }
}

/// A command that failed; the console answers ERROR and stays connected.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// PgBouncer's wording.
    #[error("admin access needed: user {0:?} is in admin.stats_users, which allows SHOW only")]
    AdminOnly(String),
    #[error("already paused")]
    AlreadyPaused,
    #[error("pooler is not paused")]
    NotPaused,
    #[error("pgroute is shutting down")]
    ShuttingDown,
    #[error("RELOAD failed: {}", crate::error_chain(.0))]
    Reload(#[source] crate::ops::ReloadError),
    #[error("invalid backend address: {problem}")]
    Address { address: String, problem: String },
    #[error(transparent)]
    Drain(#[from] crate::proxy::DrainError),
}

impl AdminError {
    /// The SQLSTATE the client sees.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Parse(e) => e.code(),
            AdminError::AdminOnly(_) => "42501",
            AdminError::AlreadyPaused | AdminError::NotPaused => "55000",
            AdminError::ShuttingDown => "57P01",
            AdminError::Reload(_) => "F0000",
            AdminError::Address { .. } | AdminError::Drain(_) => "22023",
        }
    }
}

/// One logged-in console user.
#[derive(Debug)]
pub struct Console {
    proxy: Arc<Proxy>,
    user: String,
    access: Access,
}

impl Console {
    pub fn new(proxy: Arc<Proxy>, user: String, access: Access) -> Console {
        Console {
            proxy,
            user,
            access,
        }
    }

    /// Runs a simple Query's commands in order, appending each one's answer to `out` (a report, or
    /// CommandComplete with the command's name); the first failure appends its ErrorResponse and
    /// ends the query. An empty query gets EmptyQueryResponse. ReadyForQuery is the caller's.
    pub async fn query(&self, sql: &str, out: &mut BytesMut) {
        let commands = parse(sql);
        if commands.is_empty() {
            backend::empty_query_response(out);
            return;
        }
        for command in commands {
            let done = match command {
                Ok(c) => self.run(c, out).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = done {
                tracing::info!(user = %self.user, query = sql, error = %e, "admin console command failed");
                backend::error_response(out, "ERROR", e.code(), &e.to_string());
                return;
            }
        }
    }

    async fn run(&self, command: Command, out: &mut BytesMut) -> Result<(), AdminError> {
        let proxy = &*self.proxy;
        let show = match command {
            Command::Show(what) => what,
            Command::Set => {
                backend::notice_response(out, "NOTICE", "00000", "SET ignored");
                backend::command_complete(out, "SET");
                return Ok(());
            }
            other => return self.act(other, out).await,
        };
        let table = match show {
            Show::Help => {
                backend::notice_response(
                    out,
                    "NOTICE",
                    "00000",
                    &format!("Console usage{}", show::HELP),
                );
                backend::command_complete(out, "SHOW");
                return Ok(());
            }
            Show::Pools => show::pools(proxy),
            Show::Stats => show::stats(proxy),
            Show::Clients => sockets::clients(proxy),
            Show::Servers => sockets::servers(proxy),
            Show::Databases => show::databases(proxy),
            Show::Config => show::config(proxy),
            Show::Lists => show::lists(proxy),
            Show::Version => show::version(),
            Show::State => show::state(proxy),
            Show::Replicas => replicas::replicas(proxy),
            Show::Routes => show::routes(proxy),
        };
        table.encode(out);
        Ok(())
    }

    /// The commands that change something: admin users only.
    async fn act(&self, command: Command, out: &mut BytesMut) -> Result<(), AdminError> {
        if self.access != Access::Admin {
            return Err(AdminError::AdminOnly(self.user.clone()));
        }
        let proxy = &*self.proxy;
        tracing::info!(user = %self.user, ?command, "admin console command");
        let tag = match command {
            Command::Pause => {
                match proxy.gate().phase() {
                    crate::ops::Phase::Paused => return Err(AdminError::AlreadyPaused),
                    crate::ops::Phase::ShuttingDown => return Err(AdminError::ShuttingDown),
                    crate::ops::Phase::Serving => {}
                }
                // Returns once no transaction is in flight, as PgBouncer's PAUSE does.
                proxy.pause().await;
                "PAUSE"
            }
            Command::Resume => {
                if proxy.gate().phase() == crate::ops::Phase::ShuttingDown {
                    return Err(AdminError::ShuttingDown);
                }
                if !proxy.resume() {
                    return Err(AdminError::NotPaused);
                }
                "RESUME"
            }
            Command::Reload => {
                let report = proxy.reload_from_source().map_err(AdminError::Reload)?;
                for key in &report.needs_restart {
                    let message =
                        format!("{key} changed but needs a restart; keeping its old value");
                    backend::notice_response(out, "WARNING", "01000", &message);
                }
                "RELOAD"
            }
            Command::Drain(address) => {
                proxy.drain(&backend_addr(&address)?)?;
                "DRAIN"
            }
            Command::Undrain(address) => {
                proxy.undrain(&backend_addr(&address)?)?;
                "UNDRAIN"
            }
            Command::Shutdown => {
                proxy.request_shutdown();
                "SHUTDOWN"
            }
            Command::Show(_) | Command::Set => return Ok(()),
        };
        backend::command_complete(out, tag);
        Ok(())
    }
}

fn backend_addr(address: &str) -> Result<BackendAddr, AdminError> {
    address.parse().map_err(|problem| AdminError::Address {
        address: address.to_owned(),
        problem,
    })
}

#[cfg(test)]
mod tests;
