//! callflowd: a Kazoo-compatible callflows API server.
#![forbid(unsafe_code)]

/// Account creation shared by the API, the CLI and first start.
pub mod accounts;
/// HTTP layer: routes, envelopes, errors, extractors.
pub mod api;
/// Secrets hashing and auth tokens.
pub mod auth;
/// Command line and environment.
pub mod config;
/// CPU-heavy work kept off the async workers.
pub mod cpu;
/// The account documents callflows point at: one description per type.
pub mod documents;
/// Pure domain rules: ids, numbers, callflow documents.
pub mod domain;
/// Callflow simulation: Kazoo's executor and modules, pure.
pub mod engine;
/// Revisions, diffs, the change feed and the audit: what the save pipeline wrote, read back.
pub mod history;
/// Lint rules, and the saved call tests that guard every write.
pub mod lint;
/// Kazoo's PCRE regex dialect, rewritten for the `regex` crates.
pub mod pcre;
/// Which callflow a dialled number reaches.
pub mod routing;
/// Schema registry and the Kazoo validation dialect.
pub mod schema;
/// The HTTP server loop: connection budget, timeouts, bounded shutdown.
pub mod server;
/// Simulations against an account's stored documents (lookup, engine, fetches).
pub mod simulation;

pub mod sip;
/// Service assembly and lifecycle.
pub mod startup;
/// Persistence backends behind one trait.
pub mod store;
/// Logging setup.
pub mod telemetry;

/// Import and export (Kazoo dumps, NDJSON), and the import jobs of the API.
pub mod transfer;
