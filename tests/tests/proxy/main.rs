//! Integration tests: real PostgreSQL, real clients, pgroute in between.

mod admin;
mod auth;
mod bad_input;
mod basic;
mod clients;
mod consistency;
mod control;
mod faults;
mod limits;
mod metrics;
mod operations;
mod pool_timers;
mod pooling;
mod prepared;
mod resilience;
mod routing;
mod soak;
mod tls;
mod tools;
mod tracing;
