//! Saved call tests (placeholder, filled in the next slice).
