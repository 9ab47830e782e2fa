//! Import and export: Kazoo dumps built from the reference examples (valid ones imported,
//! invalid ones reported with Kazoo's errors), dry runs, idempotency, `on_conflict`, the HTTP
//! jobs with their event stream, the export round trip, and the command line.

use std::io::Cursor;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use callflowd::transfer::import::{self, Action, Counts, Observer, OnConflict, Options, Outcome};
use callflowd::transfer::source;

use crate::helpers::{reference_or_skip, TestApp};

struct Collect(Vec<Outcome>);

impl Observer for Collect {
    fn outcome(&mut self, outcome: &Outcome) {
        self.0.push(outcome.clone());
    }
    fn progress(&mut self, _: &Counts) {}
}

/// Imports `text` through the library, as `callflowd import` does.
async fn import_text(app: &TestApp, text: &str, opts: Options) -> (Counts, Vec<Outcome>) {
    let accounts = if opts.create_accounts {
        source::accounts_in(Cursor::new(text.as_bytes().to_vec())).expect("readable")
    } else {
        Vec::new()
    };
    let items = source::spawn_reader(vec![Box::new(Cursor::new(text.as_bytes().to_vec()))], 64);
    let mut seen = Collect(Vec::new());
    let counts = import::run(&app.state.pipeline, items, &opts, accounts, &mut seen)
        .await
        .expect("import runs");
    (counts, seen.0)
}

fn opts(account: Option<&str>) -> Options {
    Options {
        account: account.map(str::to_string),
        // Small batches, so that the tests cross batch boundaries.
        batch_size: 7,
        ..Options::default()
    }
}

fn account_db(id: &str) -> String {
    format!("account%2F{}%2F{}%2F{}", &id[0..2], &id[2..4], &id[4..])
}

fn hex_id(seed: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(seed.as_bytes()))
}

/// A Kazoo `_all_docs?include_docs=true` dump of account `account`: every valid example
/// callflow, the first invalid ones (each with the field Kazoo names), neighbours (a user with
/// Kazoo's credential hashes, a device, a voicemail box, a menu, a temporal rule), a design
/// document, a row CouchDB deleted, and a document type callflowd does not keep.
fn kazoo_dump(reference: &std::path::Path, account: &str) -> (String, Vec<(String, String)>) {
    let db = account_db(account);
    let mut rows = vec![
        json!({"id": "_design/callflows", "key": "_design/callflows",
        "value": {"rev": "1-a"}, "doc": {"_id": "_design/callflows", "_rev": "1-a", "views": {}}}),
    ];
    let mut invalid = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(reference.join("examples/valid"))
        .expect("valid examples")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut invalid_files: Vec<_> = std::fs::read_dir(reference.join("examples/invalid"))
        .expect("invalid examples")
        .map(|e| e.expect("entry").path())
        .collect();
    invalid_files.sort();
    for (i, path) in files.iter().chain(invalid_files.iter().take(8)).enumerate() {
        let example: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        let Some(Value::Object(mut doc)) = example.get("doc").cloned() else {
            continue;
        };
        // Examples that need a database state first are left out.
        if example.get("precondition").is_some() {
            continue;
        }
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let id = hex_id(&name);
        doc.insert("_id".into(), json!(id));
        doc.insert("_rev".into(), json!(format!("3-{}", hex_id(&id))));
        doc.insert("pvt_type".into(), json!("callflow"));
        doc.insert("pvt_account_db".into(), json!(db));
        doc.insert("pvt_created".into(), json!(63_800_000_000i64 + i as i64));
        doc.insert("pvt_vsn".into(), json!("1"));
        if let Some(field) = example.pointer("/expect/field").and_then(Value::as_str) {
            invalid.push((id.clone(), field.to_string()));
        }
        rows.push(json!({"id": id, "key": id, "value": {"rev": doc["_rev"]}, "doc": doc}));
    }
    let neighbours = [
        json!({"_id": hex_id("user-alice"), "_rev": "5-aa", "pvt_type": "user", "first_name": "Alice",
               "last_name": "Liddell", "username": "alice",
               "pvt_md5_auth": callflowd::auth::md5_credentials("alice", "wonderland"),
               "pvt_sha1_auth": callflowd::auth::sha1_credentials("alice", "wonderland")}),
        json!({"_id": hex_id("device-desk"), "_rev": "2-bb", "pvt_type": "device", "name": "Desk phone",
               "owner_id": hex_id("user-alice"), "sip": {"username": "desk100", "password": "s3cret-pass"}}),
        json!({"_id": hex_id("vmbox-100"), "_rev": "1-cc", "pvt_type": "vmbox", "name": "Alice VM", "mailbox": "100"}),
        json!({"_id": hex_id("menu-main"), "_rev": "4-dd", "pvt_type": "menu", "name": "Main menu"}),
        json!({"_id": hex_id("rule-hours"), "_rev": "1-ee", "pvt_type": "temporal_rule", "name": "Hours",
               "cycle": "weekly", "wdays": ["monday"], "interval": 1, "time_window_start": 0, "time_window_stop": 3600}),
        json!({"_id": hex_id("limits"), "_rev": "1-ff", "pvt_type": "limits", "twoway_trunks": 2}),
    ];
    for mut doc in neighbours {
        doc["pvt_account_db"] = json!(db);
        let id = doc["_id"].clone();
        rows.push(json!({"id": id, "key": id, "value": {"rev": doc["_rev"]}, "doc": doc}));
    }
    rows.push(
        json!({"id": "gone", "key": "gone", "value": {"rev": "2-x", "deleted": true}, "doc": null}),
    );
    let dump = json!({"total_rows": rows.len(), "offset": 0, "rows": rows});
    (serde_json::to_string_pretty(&dump).expect("dump"), invalid)
}

fn summary(outcomes: &[Outcome]) -> Vec<(Option<String>, Action, Option<String>)> {
    outcomes
        .iter()
        .map(|o| (o.id.clone(), o.action, o.rev.clone()))
        .collect()
}

async fn feed_position(app: &TestApp, account: &str) -> i64 {
    app.state
        .store
        .changes_since(account, 0, 100_000)
        .await
        .expect("changes")
        .last()
        .map(|c| c.pos)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_kazoo_dump_is_checked_by_a_dry_run_then_imported_and_a_second_run_changes_nothing() {
    let Some(reference) = reference_or_skip("the Kazoo dump import tests") else {
        return;
    };
    let app = TestApp::spawn().await;
    let (account, token) = app.top_level_account("dumped").await;
    let (dump, invalid) = kazoo_dump(&reference, &account);
    assert!(invalid.len() >= 5, "the dump holds invalid examples");

    // Dry run: every decision, nothing written.
    let before = feed_position(&app, &account).await;
    let (dry, dry_outcomes) = import_text(
        &app,
        &dump,
        Options {
            dry_run: true,
            ..opts(None)
        },
    )
    .await;
    assert_eq!(
        feed_position(&app, &account).await,
        before,
        "a dry run writes nothing"
    );
    let listed = app.list(&token, &account, "").await;
    assert_eq!(
        listed.data().as_array().map(Vec::len),
        Some(0),
        "{}",
        listed.text
    );
    assert!(dry.created > 40, "{dry:?}");
    assert_eq!(dry.ignored.get("design_document"), Some(&1));
    assert_eq!(dry.ignored.get("deleted_in_couchdb"), Some(&1));
    assert_eq!(dry.ignored.get("limits"), Some(&1));

    // The real run does exactly what the dry run said.
    let (real, outcomes) = import_text(&app, &dump, opts(None)).await;
    assert_eq!(summary(&outcomes), summary(&dry_outcomes));
    assert_eq!(real, dry);
    let backend = if app.database_url.starts_with("postgres") {
        "postgresql"
    } else {
        "sqlite"
    };
    println!(
        "kazoo dump import [{backend}]: {} created, {} refused, {:?} not imported",
        real.created, real.failed, real.ignored
    );

    // Each invalid example is refused with Kazoo's error naming its field.
    for (id, field) in &invalid {
        let o = outcomes
            .iter()
            .find(|o| o.id.as_deref() == Some(id))
            .expect("reported");
        assert_eq!(o.action, Action::Failed, "{o:?}");
        let error = o.error.as_ref().expect("error");
        assert_eq!(error["error"], "400", "{error}");
        let data = error["data"].as_object().expect("data");
        let top = field.split('.').next().unwrap_or(field);
        assert!(
            data.keys().any(|k| k == field || k.starts_with(top)),
            "{id}: expected an error on {field}, got {error}"
        );
    }

    // Ids, revisions and private fields as Kazoo had them.
    let created = outcomes
        .iter()
        .find(|o| o.action == Action::Created && o.doc_type.as_deref() == Some("callflow"))
        .expect("a created callflow");
    let id = created.id.clone().expect("id");
    let fetched = app.fetch(&token, &account, &id).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text);
    let expected_rev = format!("3-{}", hex_id(&id));
    assert_eq!(
        fetched.body["revision"],
        json!(expected_rev),
        "{}",
        fetched.text
    );
    let stored = app
        .state
        .store
        .get_callflow(&account, &id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.rev, expected_rev);
    assert!(stored.doc["pvt_created"].as_i64().expect("pvt_created") >= 63_800_000_000);
    let revisions = app
        .state
        .store
        .revisions(&account, &id, None, 10)
        .await
        .expect("revisions");
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0].message.as_deref(), Some("import"));

    // Neighbours: the user logs in with the password Kazoo knew.
    let users = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{account}/users"),
            Some(&token),
            None,
        )
        .await;
    assert!(users.text.contains("alice"), "{}", users.text);
    let login = app
        .call(
            Method::PUT,
            "/v2/user_auth",
            None,
            Some(json!({"data": {"credentials": callflowd::auth::md5_credentials("alice", "wonderland"),
                                 "account_realm": "dumped.example.com"}})),
        )
        .await;
    assert_eq!(login.status, StatusCode::CREATED, "{}", login.text);
    let raw = app
        .state
        .store
        .get_document(&account, &hex_id("user-alice"))
        .await
        .expect("read")
        .expect("stored");
    assert!(
        !raw.1.doc.contains_key("pvt_md5_auth"),
        "Kazoo's unsalted hash is not kept"
    );

    // A lookup sees the imported callflows at once.
    let number = stored.doc["numbers"][0].as_str().map(str::to_string);
    if let Some(number) = number {
        let found = app
            .call(
                Method::GET,
                &format!(
                    "/v2/accounts/{account}/lookup?number={}",
                    urlencode(&number)
                ),
                Some(&token),
                None,
            )
            .await;
        assert!(found.text.contains(&id), "{}", found.text);
    }

    // Importing the same dump again changes nothing, and says so.
    let position = feed_position(&app, &account).await;
    let (again, again_outcomes) = import_text(&app, &dump, opts(None)).await;
    assert_eq!(again.created + again.replaced, 0, "{again:?}");
    assert_eq!(again.unchanged, real.created);
    assert_eq!(again.failed, real.failed);
    assert!(again_outcomes
        .iter()
        .all(|o| matches!(o.action, Action::Unchanged | Action::Failed)));
    assert_eq!(feed_position(&app, &account).await, position);
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn one_callflow(account: &str, id: &str, name: &str, number: &str) -> String {
    json!({"type": "callflow", "account_id": account, "id": id, "rev": "3-abc",
           "doc": {"_id": id, "name": name, "numbers": [number],
                   "flow": {"module": "play", "data": {"id": "tone_stream://%(200,0,500)"}, "children": {}}}})
    .to_string()
}

#[tokio::test]
async fn on_conflict_fails_skips_or_replaces_a_changed_document() {
    let app = TestApp::spawn().await;
    let (account, token) = app.top_level_account("conflicts").await;
    let id = hex_id("conflicting");
    let (first, _) = import_text(
        &app,
        &one_callflow(&account, &id, "First", "7001"),
        opts(None),
    )
    .await;
    assert_eq!(first.created, 1, "{first:?}");
    let changed = one_callflow(&account, &id, "Second", "7002");

    let (fail, outcomes) = import_text(&app, &changed, opts(None)).await;
    assert_eq!(fail.failed, 1);
    assert_eq!(outcomes[0].error.as_ref().expect("error")["error"], "409");
    assert_eq!(
        app.fetch(&token, &account, &id).await.data()["name"],
        "First"
    );

    let (skip, outcomes) = import_text(
        &app,
        &changed,
        Options {
            on_conflict: OnConflict::Skip,
            ..opts(None)
        },
    )
    .await;
    assert_eq!((skip.skipped, skip.failed), (1, 0));
    assert_eq!(outcomes[0].action, Action::Skipped);
    assert_eq!(
        app.fetch(&token, &account, &id).await.data()["name"],
        "First"
    );

    let (replace, outcomes) = import_text(
        &app,
        &changed,
        Options {
            on_conflict: OnConflict::Replace,
            ..opts(None)
        },
    )
    .await;
    assert_eq!(replace.replaced, 1, "{replace:?}");
    let rev = outcomes[0].rev.clone().expect("rev");
    assert!(
        rev.starts_with("4-"),
        "a new revision after Kazoo's 3: {rev}"
    );
    let fetched = app.fetch(&token, &account, &id).await;
    assert_eq!(fetched.data()["name"], "Second");
    assert_eq!(fetched.data()["numbers"], json!(["7002"]));
    // The number it gave up is free again; the new one routes.
    let lookup = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{account}/lookup?number=7002"),
            Some(&token),
            None,
        )
        .await;
    assert!(lookup.text.contains(&id), "{}", lookup.text);

    // A document of another type under the same id is never replaced.
    let device = json!({"type": "device", "account_id": account, "id": id,
                        "doc": {"_id": id, "name": "Not a callflow"}})
    .to_string();
    let (other, outcomes) = import_text(
        &app,
        &device,
        Options {
            on_conflict: OnConflict::Replace,
            ..opts(None)
        },
    )
    .await;
    assert_eq!(other.failed, 1, "{outcomes:?}");
}

#[tokio::test]
async fn a_dry_run_sees_clashes_between_documents_of_the_same_dump_across_batches() {
    let app = TestApp::spawn().await;
    let (account, _) = app.top_level_account("clashes").await;
    let mut lines = Vec::new();
    for i in 0..20 {
        // Every fifth callflow takes the number of the one before it.
        let number = if i % 5 == 4 { 8000 + i - 1 } else { 8000 + i };
        lines.push(one_callflow(
            &account,
            &hex_id(&format!("clash-{i}")),
            &format!("Flow {i}"),
            &number.to_string(),
        ));
    }
    let dump = lines.join("\n");
    let (dry, dry_outcomes) = import_text(
        &app,
        &dump,
        Options {
            dry_run: true,
            batch_size: 3,
            ..opts(None)
        },
    )
    .await;
    let (real, outcomes) = import_text(
        &app,
        &dump,
        Options {
            batch_size: 3,
            ..opts(None)
        },
    )
    .await;
    assert_eq!((real.created, real.failed), (16, 4), "{real:?}");
    assert_eq!(dry, real);
    assert_eq!(summary(&dry_outcomes), summary(&outcomes));
    for o in outcomes.iter().filter(|o| o.action == Action::Failed) {
        let error = o.error.as_ref().expect("error");
        assert!(error["data"]["numbers"]["unique"].is_object(), "{error}");
    }
}

/// Reads an export of `account` over HTTP.
async fn export_of(app: &TestApp, token: &str, account: &str, query: &str) -> String {
    let r = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{account}/export{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    r.text
}

#[tokio::test]
async fn an_export_imported_into_an_empty_store_gives_identical_documents() {
    let app = TestApp::spawn().await;
    let (account, token) = app.top_level_account("roundtrip").await;
    for i in 0..12 {
        app.create(
            &token,
            &account,
            json!({"name": format!("Flow {i}"), "numbers": [format!("{}", 4000 + i)],
                   "patterns": if i == 0 { json!(["^\\+1(\\d{10})$"]) } else { json!([]) },
                   "flow": {"module": "play", "data": {"id": "tone_stream://%(200,0,500)"}}}),
        )
        .await;
    }
    for (segment, data) in [
        (
            "devices",
            json!({"name": "Desk", "sip": {"username": "desk1", "password": "pass-12345"}}),
        ),
        ("vmboxes", json!({"name": "Box", "mailbox": "4100"})),
        (
            "users",
            json!({"first_name": "Ann", "last_name": "Lee", "username": "ann", "password": "ann-secret"}),
        ),
    ] {
        let r = app
            .call(
                Method::PUT,
                &format!("/v2/accounts/{account}/{segment}"),
                Some(&token),
                Some(json!({ "data": data })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // A deleted callflow travels as deleted.
    let doomed = app
        .create(
            &token,
            &account,
            json!({"name": "Doomed", "numbers": ["4999"],
                                          "flow": {"module": "play", "data": {"id": "x"}}}),
        )
        .await;
    let doomed_id = doomed.data()["id"].as_str().expect("id").to_string();
    app.call(
        Method::DELETE,
        &format!("{}/{doomed_id}", TestApp::callflows(&account)),
        Some(&token),
        None,
    )
    .await;

    let exported = export_of(&app, &token, &account, "?include_deleted=true").await;
    assert!(exported.lines().count() >= 17, "{exported}");
    let first: Value = serde_json::from_str(exported.lines().next().expect("line")).expect("json");
    assert_eq!(first["type"], "account");

    let fresh = TestApp::spawn().await;
    let (counts, outcomes) = import_text(
        &fresh,
        &exported,
        Options {
            create_accounts: true,
            ..opts(None)
        },
    )
    .await;
    assert_eq!(counts.failed, 0, "{outcomes:?}");
    assert_eq!(counts.accounts_created, 1);
    // The account's own user logs in on the new store with the same password.
    let moved_token = fresh
        .login("owner", "roundtrip.example.com", "pw-roundtrip")
        .await;
    let again = export_of(&fresh, &moved_token, &account, "?include_deleted=true").await;
    assert_eq!(again.lines().count(), exported.lines().count());
    for (moved, original) in again.lines().zip(exported.lines()) {
        assert!(
            moved == original,
            "export → import → export changed a document:\n{original}\n{moved}"
        );
    }
    let deleted = fresh
        .state
        .store
        .get_callflow(&account, &doomed_id)
        .await
        .expect("read")
        .expect("kept");
    assert!(deleted.deleted);

    // Only some types.
    let devices = export_of(&app, &token, &account, "?type=device").await;
    assert_eq!(devices.lines().count(), 1, "{devices}");
    let bad = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{account}/export?type=bogus"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
}

async fn upload(
    app: &TestApp,
    token: &str,
    account: &str,
    query: &str,
    body: String,
) -> crate::helpers::Resp {
    let req = Request::builder()
        .method(Method::PUT)
        .uri(format!("/v2/accounts/{account}/imports{query}"))
        .header("X-Auth-Token", token)
        .header("content-type", "application/x-ndjson")
        .body(Body::from(body))
        .expect("request");
    app.send(req).await
}

async fn wait_for_job(app: &TestApp, token: &str, account: &str, job: &str) -> Value {
    for _ in 0..500 {
        let r = app
            .call(
                Method::GET,
                &format!("/v2/accounts/{account}/imports/{job}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if r.data()["status"] != "running" {
            return r.data().clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the import job did not end");
}

#[tokio::test]
async fn an_import_over_http_runs_as_a_job_with_progress_events_and_per_document_errors() {
    let app = TestApp::spawn().await;
    let (account, token) = app.top_level_account("httpimport").await;
    let mut lines: Vec<String> = (0..30)
        .map(|i| {
            one_callflow(
                &account,
                &hex_id(&format!("h{i}")),
                &format!("H{i}"),
                &format!("{}", 6000 + i),
            )
        })
        .collect();
    // Refused: no number and no pattern.
    lines.push(
        json!({"type": "callflow", "id": hex_id("bad"), "doc": {"_id": hex_id("bad"), "flow": {"module": "play", "data": {}}}})
            .to_string(),
    );
    let body = lines.join("\n");

    // A dry run job writes nothing.
    let r = upload(&app, &token, &account, "?dry_run=true", body.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let job = r.data()["id"].as_str().expect("job id").to_string();
    assert!(r.header("location").expect("location").ends_with(&job));
    let done = wait_for_job(&app, &token, &account, &job).await;
    assert_eq!(done["counts"]["created"], 30, "{done}");
    assert_eq!(done["dry_run"], true);
    assert_eq!(
        app.list(&token, &account, "")
            .await
            .data()
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    // The real one, followed as server-sent events until it ends.
    let r = upload(&app, &token, &account, "?on_conflict=skip", body.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let job = r.data()["id"].as_str().expect("job id").to_string();
    let events = app
        .send(
            Request::builder()
                .uri(format!("/v2/accounts/{account}/imports/{job}"))
                .header("X-Auth-Token", &token)
                .header("accept", "text/event-stream")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(events.status, StatusCode::OK);
    assert!(events.text.contains("event: done"), "{}", events.text);
    let last = events
        .text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let done: Value = serde_json::from_str(last).expect("json");
    assert_eq!(done["status"], "done");
    assert_eq!(done["counts"]["created"], 30, "{done}");
    assert_eq!(done["counts"]["failed"], 1);
    let problem = &done["problems"][0];
    assert_eq!(problem["id"], json!(hex_id("bad")));
    assert_eq!(problem["error"]["error"], "400");
    assert!(problem["error"]["data"]["numbers"].is_object(), "{problem}");

    // Imported documents are served at once, lookups included.
    let lookup = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{account}/lookup?number=6007"),
            Some(&token),
            None,
        )
        .await;
    assert!(lookup.text.contains(&hex_id("h7")), "{}", lookup.text);

    // Jobs are listed; a bad option is refused; another account cannot see them.
    let listed = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{account}/imports"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        listed.data().as_array().map(Vec::len),
        Some(2),
        "{}",
        listed.text
    );
    let bad = upload(&app, &token, &account, "?on_conflict=merge", body).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let (_, stranger) = app.top_level_account("stranger").await;
    let peek = app
        .call(
            Method::GET,
            &format!("/v2/accounts/{account}/imports/{job}"),
            Some(&stranger),
            None,
        )
        .await;
    assert!(peek.status.is_client_error(), "{}", peek.text);
}

#[tokio::test]
async fn an_upload_past_the_import_cap_is_refused() {
    let app = TestApp::spawn_with(|args| args.max_import_bytes = 1_000).await;
    let (account, token) = app.top_level_account("capped").await;
    let body = (0..50)
        .map(|i| {
            one_callflow(
                &account,
                &hex_id(&format!("c{i}")),
                "C",
                &format!("{}", 9000 + i),
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let r = upload(&app, &token, &account, "", body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
}

#[tokio::test]
async fn the_command_line_exports_and_imports_with_a_report() {
    let app = TestApp::spawn().await;
    let (account, token) = app.top_level_account("cli").await;
    for i in 0..5 {
        app.create(
            &token,
            &account,
            json!({"name": format!("C{i}"), "numbers": [format!("{}", 5000 + i)],
                   "flow": {"module": "play", "data": {"id": "x"}}}),
        )
        .await;
    }
    let dir = tempfile::tempdir().expect("dir");
    let dump = dir.path().join("dump.ndjson");
    let bin = env!("CARGO_BIN_EXE_callflowd");
    let out = std::process::Command::new(bin)
        .args(["export", "--account", &account, "--output"])
        .arg(&dump)
        .args(["--database-url", &app.database_url])
        .output()
        .expect("export runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&dump)
            .expect("dump")
            .lines()
            .count(),
        7
    );

    let target = format!("sqlite://{}", dir.path().join("target.db").display());
    let report = dir.path().join("report.ndjson");
    let run = |extra: &[&str]| {
        std::process::Command::new(bin)
            .arg("import")
            .arg(&dump)
            .args([
                "--create-accounts",
                "--progress",
                "plain",
                "--database-url",
                &target,
                "--report",
            ])
            .arg(&report)
            .args(extra)
            .output()
            .expect("import runs")
    };
    let dry = run(&["--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let summary: Value = serde_json::from_slice(&dry.stdout).expect("summary");
    assert_eq!(summary["counts"]["created"], 6, "{summary}");
    assert_eq!(summary["dry_run"], true);
    let real = run(&[]);
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&report)
        .expect("report")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(lines.iter().all(|l| l["action"] == "created"), "{lines:?}");
    let again = run(&[]);
    assert!(again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("nothing to change"), "{stderr}");

    // A refused document makes the exit code 1.
    let broken = dir.path().join("broken.ndjson");
    std::fs::write(
        &broken,
        json!({"type": "callflow", "id": "x1", "account_id": account, "doc": {"_id": "x1"}})
            .to_string(),
    )
    .expect("write");
    let refused = std::process::Command::new(bin)
        .arg("import")
        .arg(&broken)
        .args(["--database-url", &target, "--progress", "none"])
        .output()
        .expect("import runs");
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[tokio::test]
async fn a_server_sees_at_once_what_the_command_line_imported_beside_it() {
    let app = TestApp::spawn().await;
    let (account, token) = app.top_level_account("beside").await;
    let path = format!("/v2/accounts/{account}/lookup?number=7777");
    // The account's routes are in the server's memory before the import.
    let lookup = || app.call(Method::GET, &path, Some(&token), None);
    assert_eq!(lookup().await.status, StatusCode::NOT_FOUND);
    let id = hex_id("beside");
    let dir = tempfile::tempdir().expect("dir");
    let dump = dir.path().join("one.ndjson");
    std::fs::write(&dump, one_callflow(&account, &id, "Beside", "7777")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callflowd"))
        .arg("import")
        .arg(&dump)
        .args(["--database-url", &app.database_url, "--progress", "none"])
        .output()
        .expect("import runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SQLite: the command announced its write before it ended, so the very next request
    // sees it. PostgreSQL: the change arrives by notification; allow it a moment.
    let started = std::time::Instant::now();
    loop {
        let found = lookup().await;
        if found.status == StatusCode::OK {
            assert!(found.text.contains(&id), "{}", found.text);
            break;
        }
        assert!(
            app.database_url.starts_with("postgres") && started.elapsed().as_secs() < 5,
            "the server does not see the imported callflow: {}",
            found.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let fetched = app.fetch(&token, &account, &id).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text);
}

/// A Kazoo dump of one account database: its account document (sorted among the others by id,
/// as `_all_docs` sorts them) and two callflows.
fn account_dump(account: &str, name: &str, number: &str) -> String {
    let db = account_db(account);
    let mut rows = vec![
        json!({"_id": hex_id(&format!("{name}-a")), "_rev": "1-a", "pvt_type": "callflow",
               "pvt_account_db": db, "name": format!("{name} main"), "numbers": [number],
               "flow": {"module": "play", "data": {"id": "x"}}}),
        json!({"_id": account, "_rev": "7-b", "pvt_type": "account", "pvt_account_db": db,
               "name": name, "realm": format!("{name}.kazoo.example"), "pvt_tree": [],
               "timezone": "Europe/Paris"}),
        json!({"_id": hex_id(&format!("{name}-z")), "_rev": "2-c", "pvt_type": "callflow",
               "pvt_account_db": db, "name": format!("{name} other"), "numbers": ["9999"],
               "flow": {"module": "play", "data": {"id": "x"}}}),
    ];
    rows.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|doc| json!({"id": doc["_id"], "key": doc["_id"], "value": {"rev": doc["_rev"]}, "doc": doc}))
        .collect();
    json!({"total_rows": rows.len(), "offset": 0, "rows": rows}).to_string()
}

#[tokio::test]
async fn several_account_databases_are_imported_into_the_accounts_they_describe() {
    let app = TestApp::spawn().await;
    let (first, second) = (hex_id("kazoo-account-1"), hex_id("kazoo-account-2"));
    let dir = tempfile::tempdir().expect("dir");
    let files = [
        (
            dir.path().join("one.json"),
            account_dump(&first, "alpha", "2001"),
        ),
        (
            dir.path().join("two.json"),
            account_dump(&second, "beta", "2001"),
        ),
    ];
    for (path, text) in &files {
        std::fs::write(path, text).expect("write");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callflowd"))
        .arg("import")
        .args(files.iter().map(|(p, _)| p))
        .args([
            "--create-accounts",
            "--progress",
            "none",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .expect("import runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["counts"]["accounts_created"], 2, "{summary}");
    assert_eq!(summary["counts"]["created"], 4, "{summary}");
    for (account, name) in [(&first, "alpha"), (&second, "beta")] {
        let stored = app
            .state
            .store
            .get_account(account)
            .await
            .expect("read")
            .expect("created with the dump's id");
        assert_eq!(stored.name, name);
        assert_eq!(
            stored.realm.as_deref(),
            Some(format!("{name}.kazoo.example").as_str())
        );
        assert_eq!(stored.doc["timezone"], "Europe/Paris");
        // The same number in two accounts: each account holds its own.
        let cf = app
            .state
            .store
            .callflows_with_number(account, "2001")
            .await
            .expect("read");
        assert_eq!(cf.len(), 1);
        assert_eq!(cf[0].doc["name"], format!("{name} main"));
        assert_eq!(cf[0].doc["pvt_account_id"], json!(account));
    }
    // Without --create-accounts, documents of an unknown account are refused, not guessed.
    let third = hex_id("kazoo-account-3");
    let path = dir.path().join("three.json");
    std::fs::write(&path, account_dump(&third, "gamma", "3001")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callflowd"))
        .arg("import")
        .arg(&path)
        .args(["--progress", "none", "--database-url", &app.database_url])
        .output()
        .expect("import runs");
    assert_eq!(out.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["counts"]["failed"], 2, "{summary}");
    assert!(app
        .state
        .store
        .get_account(&third)
        .await
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn a_dry_run_sees_a_number_freed_by_a_replace_earlier_in_the_dump() {
    let app = TestApp::spawn().await;
    let (account, _) = app.top_level_account("freed").await;
    let moving = hex_id("moving");
    let (first, _) = import_text(
        &app,
        &one_callflow(&account, &moving, "Old", "5100"),
        opts(None),
    )
    .await;
    assert_eq!(first.created, 1);
    // The stored callflow gives up 5100 (replaced with 5101); two batches later another
    // callflow of the dump takes 5100.
    let dump = [
        one_callflow(&account, &moving, "New", "5101"),
        one_callflow(&account, &hex_id("filler-1"), "Filler 1", "5102"),
        one_callflow(&account, &hex_id("filler-2"), "Filler 2", "5103"),
        one_callflow(&account, &hex_id("taker"), "Taker", "5100"),
    ]
    .join("\n");
    let run = |dry_run| Options {
        dry_run,
        batch_size: 2,
        on_conflict: OnConflict::Replace,
        ..opts(None)
    };
    let (dry, dry_outcomes) = import_text(&app, &dump, run(true)).await;
    let (real, outcomes) = import_text(&app, &dump, run(false)).await;
    assert_eq!(
        (real.replaced, real.created, real.failed),
        (1, 3, 0),
        "{outcomes:?}"
    );
    assert_eq!(dry, real, "{dry_outcomes:?}");
    assert_eq!(summary(&dry_outcomes), summary(&outcomes));
}
