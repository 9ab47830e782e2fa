//! Binary entry point: parse the command line, set up logging, dispatch.
#![forbid(unsafe_code)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use secrecy::ExposeSecret;
use serde_json::json;

use callflowd::accounts::{new_account, NewAccount};

/// mimalloc instead of the system allocator: request handling allocates small, short-lived
/// objects on both cores at once, where glibc's arenas contend (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use callflowd::config::{Cli, Command};
use callflowd::startup::{shutdown_signal, App};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    callflowd::telemetry::init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let app = App::build(&args).await?;
            if let Some(b) = &app.bootstrap {
                println!(
                    "Created the admin account {} (realm localhost, user admin).",
                    b.account_id
                );
                println!("  password: {}", b.password.expose_secret());
                println!("  api key:  {}", b.api_key.expose_secret());
                println!("These are shown once; only hashes are stored.");
            }
            tracing::info!(addr = %app.local_addr()?, database = %args.store.redacted(), "callflowd listening");
            if let Some(addr) = app.metrics_addr() {
                tracing::info!(addr = %addr, "metrics listening");
            }
            let store = app.state.store.clone();
            let grace = args.shutdown_grace;
            let stop_requested = Arc::new(OnceLock::<Instant>::new());
            let requested = stop_requested.clone();
            let stop = async move {
                shutdown_signal().await;
                let _ = requested.set(Instant::now());
                // Whatever happens next (a store that never answers, a stuck blocking task),
                // the process is gone just after the grace period.
                let limit = grace + Duration::from_millis(500);
                std::thread::spawn(move || {
                    std::thread::sleep(limit);
                    eprintln!(
                        "callflowd: still running {limit:?} after the stop request; exiting now"
                    );
                    std::process::exit(1);
                });
            };
            app.run_until_stopped(stop).await?;
            // In-flight requests are done (or their grace is over); close the database cleanly
            // (SQLite checkpoints) with what is left of the grace period.
            let since = stop_requested
                .get()
                .map(Instant::elapsed)
                .unwrap_or_default();
            let left = grace.saturating_sub(since).max(Duration::from_millis(100));
            if tokio::time::timeout(left, store.close()).await.is_err() {
                tracing::warn!("the store did not close within the grace period; exiting anyway");
            }
            tracing::info!("stopped");
            // Do not wait for stuck background work (a write blocked on a locked store).
            std::process::exit(0);
        }
        Command::CreateAccount(args) => {
            let store = callflowd::store::open_tool(&args.store.database_url)
                .await
                .with_context(|| format!("opening {}", args.store.redacted()))?;
            let created = new_account(
                store.as_ref(),
                NewAccount {
                    name: args.name,
                    realm: Some(args.realm),
                    parent: None,
                    tree: Vec::new(),
                    doc: Default::default(),
                    admin: Some((args.username, args.password.expose_secret().to_string())),
                },
            )
            .await
            .map_err(|e| match e {
                callflowd::store::StoreError::Conflict => {
                    anyhow::anyhow!("an account with that realm already exists")
                }
                callflowd::store::StoreError::Taken(taken) => anyhow::anyhow!(
                    "already in use by another account: {}",
                    taken
                        .iter()
                        .map(|(field, value)| format!("{field} {value:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => other.into(),
            })?;
            let out = json!({
                "account_id": created.account.id,
                "user_id": created.user_id,
                "api_key": created.api_key,
            });
            println!("{out}");
        }
        Command::Lookup(args) => {
            let store = callflowd::store::open_tool(&args.store.database_url)
                .await
                .with_context(|| format!("opening {}", args.store.redacted()))?;
            let routes = callflowd::routing::RouteCache::new(
                store.clone(),
                callflowd::routing::cache::DEFAULT_BUDGET_BYTES,
            );
            match callflowd::api::lookup::resolve(
                &routes,
                store.as_ref(),
                &args.account,
                &args.number,
                !args.no_no_match,
            )
            .await?
            {
                Some(data) => println!("{}", serde_json::to_string_pretty(&data)?),
                None => {
                    eprintln!(
                        "no callflow in account {} routes {:?}",
                        args.account, args.number
                    );
                    std::process::exit(1);
                }
            }
        }
        Command::Simulate(args) => simulate(args).await?,
        Command::Lint(args) => {
            if !lint(args).await? {
                std::process::exit(1);
            }
        }
        Command::Test(args) => {
            if !test(args).await? {
                std::process::exit(1);
            }
        }
        Command::Import(args) => {
            let code = callflowd::transfer::cli::import(args).await?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Export(args) => callflowd::transfer::cli::export(args).await?,
    }
    Ok(())
}

/// `callflowd simulate`: the request `data` built from the options, run as the API runs it.
async fn simulate(args: callflowd::config::SimulateArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let json_or_file = |text: &str| -> anyhow::Result<serde_json::Value> {
        let trimmed = text.trim_start();
        let source = if trimmed.starts_with('[') || trimmed.starts_with('{') {
            text.to_string()
        } else {
            std::fs::read_to_string(text).with_context(|| format!("reading {text}"))?
        };
        serde_json::from_str(&source).with_context(|| format!("parsing {text} as JSON"))
    };
    let mut data = serde_json::Map::new();
    data.insert("number".into(), json!(args.number));
    if let Some(caller) = &args.caller {
        let value = if caller.trim_start().starts_with('{') {
            json_or_file(caller)?
        } else {
            json!({ "id_number": caller })
        };
        data.insert("caller".into(), value);
    }
    if let Some(at) = &args.at {
        data.insert("now".into(), json!(at));
    }
    if let Some(events) = &args.events {
        data.insert("events".into(), json_or_file(events)?);
    }
    if let Some(path) = &args.callflow {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut draft: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} as JSON", path.display()))?;
        // A file may hold the document or a Kazoo envelope around it.
        if let Some(inner) = draft.get("data").filter(|d| d.is_object()).cloned() {
            draft = inner;
        }
        data.insert("callflow".into(), draft);
    }
    if let Some(id) = &args.callflow_id {
        data.insert("callflow_id".into(), json!(id));
    }
    if args.draft {
        data.insert("draft".into(), json!(true));
    }
    if let Some(documents) = &args.documents {
        data.insert("documents".into(), json_or_file(documents)?);
    }
    if let Some(max) = args.max_steps {
        data.insert("max_steps".into(), json!(max));
    }

    let (pipeline, account) = open_pipeline(&args.store, &args.account).await?;
    let invalid = |errors: callflowd::schema::SchemaErrors| -> anyhow::Error {
        anyhow::anyhow!(
            "the simulation request is invalid: {}",
            serde_json::to_string_pretty(&errors.to_json()).unwrap_or_default()
        )
    };
    let request = callflowd::simulation::parse(&data, chrono::Utc::now()).map_err(invalid)?;
    let result = callflowd::simulation::run(&pipeline, &account, request)
        .await
        .map_err(|e| match e {
            callflowd::documents::pipeline::Error::Invalid(errors) => invalid(errors),
            callflowd::documents::pipeline::Error::NotFound(id) => {
                anyhow::anyhow!("no callflow {id} in account {}", args.account)
            }
            other => other.into(),
        })?;
    let tree = args.tree || (!args.json && std::io::stdout().is_terminal());
    if tree {
        print!("{}", callflowd::simulation::render_tree(&result));
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(())
}

/// The store, the save pipeline and the account a CLI command works on.
async fn open_pipeline(
    store_args: &callflowd::config::StoreArgs,
    account_id: &str,
) -> anyhow::Result<(
    callflowd::documents::pipeline::Pipeline,
    callflowd::store::Account,
)> {
    let pipeline = callflowd::documents::pipeline::Pipeline::open_tool(
        &store_args.database_url,
        callflowd::documents::pipeline::Limits::default(),
    )
    .await
    .with_context(|| format!("opening {}", store_args.redacted()))?;
    let account = pipeline
        .store
        .get_account(account_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account {account_id}"))?;
    Ok((pipeline, account))
}

fn cli_error(e: callflowd::documents::pipeline::Error) -> anyhow::Error {
    match e {
        callflowd::documents::pipeline::Error::Invalid(errors) => anyhow::anyhow!(
            "invalid: {}",
            serde_json::to_string_pretty(&errors.to_json()).unwrap_or_default()
        ),
        callflowd::documents::pipeline::Error::NotFound(id) => anyhow::anyhow!("no callflow {id}"),
        other => other.into(),
    }
}

/// `callflowd lint`: true when no finding is an error.
async fn lint(args: callflowd::config::LintArgs) -> anyhow::Result<bool> {
    use callflowd::documents::pipeline::{Kind, Target};
    let (pipeline, account) = open_pipeline(&args.store, &args.account).await?;
    let findings = if let Some(path) = &args.callflow {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut draft: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} as JSON", path.display()))?;
        if let Some(inner) = draft.get("data").filter(|d| d.is_object()).cloned() {
            draft = inner;
        }
        let serde_json::Value::Object(draft) = draft else {
            anyhow::bail!("{} does not hold a JSON object", path.display());
        };
        let id = if draft.contains_key("_id") || draft.contains_key("id") {
            callflowd::documents::pipeline::requested_id(&draft)
        } else {
            callflowd::simulation::DRAFT_ID.to_string()
        };
        let doc = pipeline
            .validate(Kind::Callflow, &account, draft)
            .await
            .map_err(cli_error)?;
        callflowd::lint::lint_callflow(&pipeline, &account.id, &id, doc)
            .await
            .map_err(cli_error)?
    } else if let Some(id) = &args.callflow_id {
        let stored = pipeline
            .load(Target::new(Kind::Callflow, &account.id, id))
            .await
            .map_err(cli_error)?;
        callflowd::lint::lint_callflow(&pipeline, &account.id, id, stored.doc)
            .await
            .map_err(cli_error)?
    } else {
        callflowd::lint::lint_account(&pipeline, &account.id)
            .await
            .map_err(cli_error)?
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&callflowd::lint::report(&findings))?
        );
    } else {
        for f in &findings {
            let severity = serde_json::to_value(f.severity)?;
            println!(
                "{} {} {} {}: {}",
                severity.as_str().unwrap_or("?"),
                f.rule,
                f.callflow_id,
                f.path,
                f.message
            );
            if let Some(fix) = &f.fix {
                println!("    fix: {fix}");
            }
        }
        let errors = findings
            .iter()
            .filter(|f| f.severity == callflowd::lint::Severity::Error)
            .count();
        println!("{} findings, {errors} errors", findings.len());
    }
    Ok(!findings
        .iter()
        .any(|f| f.severity == callflowd::lint::Severity::Error))
}

/// `callflowd test`: true when every test selected passed.
async fn test(args: callflowd::config::TestArgs) -> anyhow::Result<bool> {
    let (pipeline, account) = open_pipeline(&args.store, &args.account).await?;
    let request_id = format!("cli-{}", callflowd::auth::random_hex(8));
    let results =
        callflowd::lint::calltests::run_selected(&pipeline, &account, &request_id, &args.names)
            .await
            .map_err(cli_error)?;
    if args.json {
        let all: Vec<_> = results.iter().map(|r| r.to_json()).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for r in &results {
            match &r.divergence {
                Some(d) => println!("{} {}: {d}", r.result, r.name),
                None => println!("{} {}", r.result, r.name),
            }
        }
        let passed = results.iter().filter(|r| r.result == "pass").count();
        println!("{} tests, {passed} passed", results.len());
    }
    Ok(results.iter().all(|r| r.result == "pass"))
}
