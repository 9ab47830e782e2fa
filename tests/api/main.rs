//! One integration-test binary (one link step) with a module per area.

mod helpers;

mod auth;
mod callflows;
mod concurrency;
mod conformance;
mod envelope;
mod lookup;
mod socket;
