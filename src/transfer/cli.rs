//! `callflowd import` and `callflowd export`: files, progress on the terminal (a bar, or plain
//! lines when stderr is not one), the per-document report and the summary.

use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::import::{self, Action, Counts, Observer, Options, Outcome};
use super::source::{self, Counting};
use crate::config::{ExportArgs, ImportArgs, Progress};
use crate::documents::pipeline::{Limits, Pipeline};

fn open_input(path: &std::path::Path) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
    if path.as_os_str() == "-" {
        Ok(Box::new(std::io::stdin()))
    } else {
        Ok(Box::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    }
}

/// Runs `callflowd import`; the process's exit code (0: nothing refused, 1: some documents
/// refused or the file broken off).
pub async fn import(args: ImportArgs) -> anyhow::Result<i32> {
    let stdin = args.files.iter().any(|f| f.as_os_str() == "-");
    if stdin && args.create_accounts {
        anyhow::bail!("--create-accounts reads the files twice: it cannot read stdin (-)");
    }
    let total: u64 = args
        .files
        .iter()
        .filter(|f| f.as_os_str() != "-")
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let pipeline = Pipeline::open_tool(
        &args.store.database_url,
        Limits {
            max_patterns_per_account: args.max_patterns_per_account,
            ..Limits::default()
        },
    )
    .await
    .with_context(|| format!("opening {}", args.store.redacted()))?;
    if let Some(id) = &args.account {
        if pipeline.store.get_account(id).await?.is_none() {
            anyhow::bail!("no account {id} (create it first, or import with --create-accounts)");
        }
    }

    let mut accounts = Vec::new();
    if args.create_accounts {
        for path in &args.files {
            let file = BufReader::new(open_input(path)?);
            accounts.extend(
                source::accounts_in(file)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            );
        }
    }

    let read = Arc::new(AtomicU64::new(0));
    let mut inputs: Vec<Box<dyn BufRead + Send>> = Vec::new();
    for path in &args.files {
        inputs.push(Box::new(BufReader::with_capacity(
            256 * 1024,
            Counting::new(open_input(path)?, read.clone()),
        )));
    }
    let items = source::spawn_reader(inputs, 128);

    let report = match &args.report {
        Some(path) => Some(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let display = match args.progress {
        Progress::Auto if std::io::stderr().is_terminal() => Progress::Bar,
        Progress::Auto => Progress::Plain,
        other => other,
    };
    let bar = (display == Progress::Bar).then(|| {
        let bar = indicatif::ProgressBar::new(total.max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let opts = Options {
        account: args.account.clone(),
        create_accounts: args.create_accounts,
        dry_run: args.dry_run,
        on_conflict: args.on_conflict,
        message: args.message.clone(),
        batch_size: args.batch_size as usize,
        ..Options::default()
    };
    let mut observer = CliObserver {
        report,
        report_error: None,
        bar,
        plain: display == Progress::Plain,
        read: read.clone(),
        total,
        started: Instant::now(),
        last_line: Instant::now(),
    };
    let result = import::run(&pipeline, items, &opts, accounts, &mut observer).await;
    if let Some(bar) = &observer.bar {
        bar.finish_and_clear();
    }
    if let Some(report) = observer.report.as_mut() {
        report.flush().context("writing the report")?;
    }
    if let Some(e) = observer.report_error.take() {
        return Err(e.context("writing the report"));
    }
    let elapsed = observer.started.elapsed();
    let (counts, broken) = match result {
        Ok(counts) => (counts, None),
        Err(import::ImportError::Broken(message)) => (Counts::default(), Some(message)),
        Err(e) => return Err(e.into()),
    };
    if let Some(message) = &broken {
        eprintln!("import stopped: {message}");
        eprintln!("what was read before that point is saved; fix the file and import it again");
        return Ok(1);
    }
    let verb = if args.dry_run { "would be " } else { "" };
    eprintln!(
        "{} documents read in {:.1}s: {} {verb}created, {} {verb}replaced, {} unchanged, {} skipped, {} refused{}{}",
        counts.read,
        elapsed.as_secs_f64(),
        counts.created,
        counts.replaced,
        counts.unchanged,
        counts.skipped,
        counts.failed,
        if counts.accounts_created > 0 {
            format!(", {} accounts {verb}created", counts.accounts_created)
        } else {
            String::new()
        },
        if counts.ignored.is_empty() {
            String::new()
        } else {
            format!(
                "; not imported: {}",
                counts
                    .ignored
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if counts.changed() == 0 && counts.failed == 0 {
        eprintln!("nothing to change: the store already holds every document of the dump");
    }
    println!(
        "{}",
        serde_json::json!({"dry_run": args.dry_run, "counts": counts, "seconds": elapsed.as_secs_f64()})
    );
    Ok(if counts.failed > 0 { 1 } else { 0 })
}

struct CliObserver {
    report: Option<BufWriter<std::fs::File>>,
    report_error: Option<anyhow::Error>,
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    read: Arc<AtomicU64>,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Observer for CliObserver {
    fn outcome(&mut self, outcome: &Outcome) {
        if let Some(report) = self.report.as_mut() {
            let line = serde_json::to_string(outcome).unwrap_or_default();
            if let Err(e) = writeln!(report, "{line}") {
                self.report_error.get_or_insert(e.into());
            }
        }
        if outcome.action == Action::Failed && self.report.is_none() && !self.plain {
            if let Some(bar) = &self.bar {
                bar.println(format!(
                    "refused {} {}: {}",
                    outcome.doc_type.as_deref().unwrap_or("?"),
                    outcome.id.as_deref().unwrap_or("?"),
                    outcome
                        .error
                        .as_ref()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                ));
            }
        }
    }

    fn progress(&mut self, counts: &Counts) {
        let read = self.read.load(Ordering::Relaxed);
        let summary = format!(
            "{} docs: {} created, {} replaced, {} unchanged, {} refused",
            counts.read, counts.created, counts.replaced, counts.unchanged, counts.failed
        );
        if let Some(bar) = &self.bar {
            bar.set_position(read.min(self.total));
            bar.set_message(summary);
        } else if self.plain && self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            let rate = counts.read as f64 / secs;
            let percent = if self.total > 0 {
                format!(" ({:.0}%)", read as f64 * 100.0 / self.total as f64)
            } else {
                String::new()
            };
            eprintln!(
                "import: {:.1} of {:.1} MB{percent}, {rate:.0} docs/s, {summary}",
                read as f64 / 1e6,
                self.total as f64 / 1e6
            );
        }
    }
}

/// Runs `callflowd export`.
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    super::export::check_types(&args.types).map_err(|e| anyhow::anyhow!(e))?;
    let store = crate::store::open(&args.store.database_url)
        .await
        .with_context(|| format!("opening {}", args.store.redacted()))?;
    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout())),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1_024);
    let opts = super::export::ExportOptions {
        account: args.account.clone(),
        types: args.types.clone(),
        include_deleted: args.include_deleted,
    };
    let producer = tokio::spawn(async move { super::export::export(&store, &opts, tx).await });
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        while let Some(line) = rx.blocking_recv() {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()
    });
    let counts = producer.await?.map_err(|e| match e {
        crate::store::StoreError::NotFound => {
            anyhow::anyhow!("no account {}", args.account.as_deref().unwrap_or(""))
        }
        other => other.into(),
    })?;
    writer.await?.context("writing the export")?;
    eprintln!(
        "exported {} accounts and {} documents",
        counts.accounts, counts.documents
    );
    Ok(())
}
