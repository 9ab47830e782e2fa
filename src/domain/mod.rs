//! Domain types and pure rules: ids, number normalisation, document helpers.
//!
//! Owns: everything about a callflow document that needs neither HTTP nor storage. Depends on
//! nothing else in the crate.

pub mod callflow;
pub mod numbers;
pub mod owners;
pub mod search;

use rand::RngCore;

/// Kazoo's encoded account database name.
pub fn account_db(id: &str) -> String {
    if id.len() == 32 {
        format!("account%2F{}%2F{}%2F{}", &id[0..2], &id[2..4], &id[4..])
    } else {
        format!("account%2F{id}")
    }
}

/// A new 32-lowercase-hex document id, as CouchDB generates them.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether `s` looks like a Kazoo document id (Kazoo itself only checks the length of account
/// ids; we check the same length and nothing more).
pub fn is_account_id(s: &str) -> bool {
    s.len() == 32
}

/// Seconds between 0000-01-01 and 1970-01-01: Kazoo stores timestamps as Gregorian seconds.
pub const GREGORIAN_OFFSET: i64 = 62_167_219_200;

/// Now, in Gregorian seconds.
pub fn now_gregorian() -> i64 {
    chrono::Utc::now().timestamp() + GREGORIAN_OFFSET
}
