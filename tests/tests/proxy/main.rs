//! Integration tests: real PostgreSQL, real clients, pgroute in between.

mod bad_input;
mod basic;
mod clients;
mod faults;
mod pooling;
mod tools;
