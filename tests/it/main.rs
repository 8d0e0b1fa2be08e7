//! Integration tests: every test drives the real `App` (or the real binary)
//! against a fresh database, on SQLite and, when configured, PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod admin;
mod analytics;
mod auth;
mod cli;
mod console;
mod cors;
mod estuary;
mod exact;
mod freshness;
mod front;
mod limits;
mod meta;
mod openapi;
mod operability;
mod ops;
mod races;
mod reads;
mod scim;
mod strict;
mod v1_keys;
mod verify;
mod webhooks;
