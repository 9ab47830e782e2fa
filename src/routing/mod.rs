//! Routing: which callflow a dialled number reaches.
//!
//! Owns: the pattern dialect. Must not touch HTTP or SQL.

pub mod pattern;
