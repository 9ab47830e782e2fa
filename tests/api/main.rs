//! One integration-test binary (one link step) with a module per area.

mod helpers;

mod auth;
mod cache;
mod callflows;
mod calltests;
mod concurrency;
mod conformance;
mod direct;
mod documents;
mod envelope;
mod fidelity;
mod fidelity_listing;
mod group_commit;
mod history;
mod isolation;
mod limits;
mod lint;
mod lookup;
mod openapi;
mod pcre;
mod safety;
mod simulations;
mod sip;
mod socket;
mod transfer;

/// Says which backend this run covers; without PostgreSQL the PostgreSQL leg is skipped.
#[test]
fn backend_under_test_notice() {
    match std::env::var("CALLFLOWD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => println!("NOTICE: integration suite running against PostgreSQL ({url})"),
        _ => println!(
            "NOTICE: CALLFLOWD_TEST_POSTGRES_URL not set; integration suite ran on SQLite only, PostgreSQL leg skipped (.ci/run runs it)"
        ),
    }
}
