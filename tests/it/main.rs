//! Integration tests: every test drives the real `App` (or the real binary)
//! against a fresh database, on SQLite and, when configured, PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod admin;
mod auth;
mod cli;
mod estuary;
mod openapi;
mod operability;
mod ops;
mod v1_keys;
mod verify;
