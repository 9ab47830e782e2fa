//! Moving data in and out: callflowd's NDJSON export, imports of it and of Kazoo's CouchDB
//! dumps, with dry runs, idempotency and progress, from the command line or as HTTP jobs.
//!
//! Owns the formats ([`source`], [`export`]), the import's decisions ([`import`]) and the
//! jobs the API runs ([`jobs`]). Saves through the store with the save pipeline's
//! validation; knows nothing of HTTP beyond Kazoo's error shape.

pub mod cli;
pub mod export;
pub mod import;
pub mod jobs;
pub mod source;
