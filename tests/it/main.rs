//! Integration tests: every test drives the real `App` (or the real binary)
//! against a fresh database, on SQLite and, when configured, PostgreSQL.

mod common;

mod auth;
mod cli;
mod ops;
mod v1_keys;
