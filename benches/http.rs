//! HTTP throughput of create (PUT) and fetch (GET) on SQLite and on PostgreSQL, from the same
//! run: `cargo bench --bench http`. PostgreSQL comes from `CALLFLOWD_BENCH_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`; a scratch database is created).
//! The server and the load generator share the machine, so absolute figures are a floor;
//! the SQLite/PostgreSQL ratio is the comparable part.
//!
//! History's cost (docs/history.md): on each backend, creates are also measured with writes
//! recorded as before history existed (a revision and a change row, but no feed position and
//! no who or why: the hidden `--bench-history-as-before`) and with history, alternating over
//! `HISTORY_ROUNDS` rounds on fresh databases, and the ratio of the summed throughput is
//! printed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use callflowd::config::ServeArgs;
use callflowd::startup::App;

const WORKERS: usize = 16;
const PHASE: Duration = Duration::from_secs(5);

struct Phase {
    ok: usize,
    errors: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn phase<F, Fut>(make: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (make, counter) = (make.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while started.elapsed() < PHASE {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if make(i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("worker");
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Phase {
        ok: all.len(),
        errors,
        per_sec: all.len() as f64 / elapsed,
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// Rounds of (history off, history on) create phases per backend.
const HISTORY_ROUNDS: usize = 5;

async fn run_backend(label: &str, database_url: String) -> (Phase, Phase) {
    run_server(label, database_url, false, true).await
}

/// Create (and, when `fetch`, fetch) phases against a fresh server on `database_url`.
async fn run_server(
    label: &str,
    database_url: String,
    as_before: bool,
    fetch: bool,
) -> (Phase, Phase) {
    let mut args = ServeArgs::ephemeral(&database_url).expect("default serve arguments");
    args.admin_password = Some("bench".into());
    args.account_bucket_size = 0;
    args.bench_history_as_before = as_before;
    let app = App::build(&args).await.expect("app");
    // Closed after the run: a dozen servers' pools left open would exhaust PostgreSQL's
    // connections.
    let store = app.state.store.clone();
    let base = format!("http://{}", app.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(WORKERS)
        .build()
        .unwrap();
    let creds = callflowd::auth::md5_credentials("admin", "bench");
    let login: Value = client
        .put(format!("{base}/v2/user_auth"))
        .body(json!({"data": {"credentials": creds, "account_name": "admin"}}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["auth_token"].as_str().unwrap().to_string();
    let account = login["data"]["account_id"].as_str().unwrap().to_string();
    let url = format!("{base}/v2/accounts/{account}/callflows");

    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let create = {
        let (client, token, url, ids) = (client.clone(), token.clone(), url.clone(), ids.clone());
        phase(move |i| {
            let (client, token, url, ids) = (client.clone(), token.clone(), url.clone(), ids.clone());
            async move {
                let body = json!({"data": {"name": format!("bench {i}"), "numbers": [format!("+1800{i:07}")],
                    "flow": {"module": "user", "data": {"id": "5a1b5a1b5a1b5a1b5a1b5a1b5a1b5a1b"}}}});
                match client.put(&url).header("X-Auth-Token", &token).body(body.to_string()).send().await {
                    Ok(r) if r.status() == 201 => {
                        if let Ok(v) = r.json::<Value>().await {
                            if let Some(id) = v["data"]["id"].as_str() {
                                ids.lock().unwrap().push(id.to_string());
                            }
                        }
                        true
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        eprintln!("create failed: {status} {}", &body[..body.len().min(300)]);
                        false
                    }
                    Err(e) => {
                        eprintln!("create failed: {e}");
                        false
                    }
                }
            }
        })
        .await
    };
    let ids: Arc<Vec<String>> = Arc::new(ids.lock().unwrap().clone());
    if !fetch {
        println!(
            "{label:>22} create (PUT) {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} ok, {} failed)",
            create.per_sec,
            create.p50.as_secs_f64() * 1e3,
            create.p99.as_secs_f64() * 1e3,
            create.ok,
            create.errors
        );
        let _ = stop.send(());
        let _ = server.await;
        store.close().await;
        let none = Phase {
            ok: 0,
            errors: 0,
            per_sec: 0.0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
        };
        return (create, none);
    }
    let fetch = {
        let (client, token, url) = (client.clone(), token.clone(), url.clone());
        phase(move |i| {
            let (client, token, url, ids) = (client.clone(), token.clone(), url.clone(), ids.clone());
            async move {
                let id = &ids[i % ids.len()];
                matches!(client.get(format!("{url}/{id}")).header("X-Auth-Token", &token).send().await, Ok(r) if r.status() == 200)
            }
        })
        .await
    };
    for (name, p) in [("create (PUT)", &create), ("fetch (GET)", &fetch)] {
        println!(
            "{label:>10} {name:<13} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} ok, {} failed)",
            p.per_sec,
            p.p50.as_secs_f64() * 1e3,
            p.p99.as_secs_f64() * 1e3,
            p.ok,
            p.errors
        );
    }
    let _ = stop.send(());
    let _ = server.await;
    store.close().await;
    (create, fetch)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "# HTTP throughput, {WORKERS} concurrent clients, {}s per phase, release build",
            PHASE.as_secs()
        );
        let dir = tempfile::tempdir().unwrap();
        let (sc, sf) = run_backend(
            "sqlite",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        )
        .await;
        let admin = std::env::var("CALLFLOWD_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let postgres = callflowd::store::PgStore::scratch_database(&admin).await;
        match &postgres {
            Ok(url) => {
                let (pc, pf) = run_backend("postgres", url.clone()).await;
                println!(
                    "postgres / sqlite: create {:.2}x, fetch {:.2}x",
                    pc.per_sec / sc.per_sec,
                    pf.per_sec / sf.per_sec
                );
            }
            Err(e) => println!("PostgreSQL unavailable ({e}); only SQLite measured"),
        }

        println!(
            "# history's cost: creates recorded as before history and with it, {HISTORY_ROUNDS} alternating rounds per backend, fresh database each"
        );
        let mut backends = vec!["sqlite"];
        if postgres.is_ok() {
            backends.push("postgres");
        }
        for backend in backends {
            let (mut before, mut on) = (0.0, 0.0);
            for round in 0..HISTORY_ROUNDS {
                // Alternate which goes first, so drift on a shared machine hits both.
                let order = if round % 2 == 0 { [true, false] } else { [false, true] };
                for as_before in order {
                    let url = if backend == "sqlite" {
                        format!(
                            "sqlite://{}",
                            dir.path().join(format!("history-{round}-{as_before}.db")).display()
                        )
                    } else {
                        callflowd::store::PgStore::scratch_database(&admin)
                            .await
                            .expect("scratch database")
                    };
                    let label = format!(
                        "{backend} history {}",
                        if as_before { "before" } else { "on" }
                    );
                    let (create, _) = run_server(&label, url, as_before, false).await;
                    if as_before {
                        before += create.per_sec;
                    } else {
                        on += create.per_sec;
                    }
                }
            }
            println!(
                "history on / before [{backend}]: create {:.3}x ({:.0} vs {:.0} req/s, mean of {HISTORY_ROUNDS} rounds)",
                on / before,
                on / HISTORY_ROUNDS as f64,
                before / HISTORY_ROUNDS as f64
            );
        }
    });
}
