//! Callflow simulation engine (minimal stand-in on the `temporal` branch: the engine branch's
//! version of this file replaces it on merge).
//!
//! Owns: the documents seam the modules read through. Must not: do I/O or read clocks.

pub mod temporal;

/// The account documents a simulation reads, handed in by the caller.
pub trait Documents {
    fn get(&self, doc_type: &str, id: &str) -> Option<&serde_json::Map<String, serde_json::Value>>;
    fn owned_by(
        &self,
        doc_type: &str,
        owner_id: &str,
    ) -> Vec<&serde_json::Map<String, serde_json::Value>>;
    fn all(&self, doc_type: &str) -> Vec<&serde_json::Map<String, serde_json::Value>>;
    fn account(&self) -> Option<&serde_json::Map<String, serde_json::Value>>;
}
