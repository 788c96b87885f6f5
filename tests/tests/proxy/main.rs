//! Integration tests: real PostgreSQL, real clients, pgroute in between.

mod basic;
