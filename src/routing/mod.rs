//! Routing: which callflow a dialled number reaches, and why.
//!
//! Owns: the pattern dialect ([`pattern`]), per-account snapshots ([`table`]) and their cache
//! ([`cache`]), plus a plain reference implementation of Kazoo's algorithm ([`reference`])
//! that tests and benchmarks compare the engine with. Must not touch HTTP or SQL.

pub mod cache;
pub mod numbers;
pub mod pattern;
pub mod reference;
pub mod table;

pub use cache::RouteCache;
pub use table::{MatchKind, Route, RouteTable};
