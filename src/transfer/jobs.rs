//! Import jobs started over HTTP: the uploaded dump is spooled to a temporary file, then
//! imported in the background; the job's state, counts and per-document errors are kept in
//! memory, and its progress is pushed to whoever follows it.
//!
//! Jobs live in the process that runs them: a restart forgets them (the documents they wrote
//! stay; importing the same file again finishes an interrupted job and changes nothing else).

use std::collections::VecDeque;
use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};

use super::import::{self, Action, Counts, Observer, Options, Outcome};
use crate::documents::pipeline::Pipeline;

/// Per-document problems a job keeps (the counts go on past it).
const MAX_KEPT_PROBLEMS: usize = 1_000;
/// Finished jobs kept for reading.
const MAX_FINISHED: usize = 100;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Done,
    Failed,
}

/// A job's state as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub account_id: String,
    pub status: Status,
    pub dry_run: bool,
    pub on_conflict: import::OnConflict,
    /// Bytes of the dump read so far, and in all.
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub counts: Counts,
    /// Documents refused or skipped (the first [`MAX_KEPT_PROBLEMS`]), with Kazoo's errors.
    pub problems: Vec<Outcome>,
    /// Problems not kept past the cap.
    pub problems_not_kept: u64,
    /// Why the job stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Gregorian seconds.
    pub started: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<i64>,
}

/// One job.
pub struct Job {
    account_id: String,
    state: Mutex<JobView>,
    bytes_read: Arc<AtomicU64>,
    /// Rung after each batch and at the end (progress followers).
    changed: tokio::sync::watch::Sender<u64>,
}

impl Job {
    /// The job now.
    pub fn view(&self) -> JobView {
        let mut view = match self.state.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        view.bytes_read = self
            .bytes_read
            .load(Ordering::Relaxed)
            .min(view.bytes_total);
        view
    }

    /// Where the job is (without copying its problems).
    pub fn status(&self) -> Status {
        match self.state.lock() {
            Ok(s) => s.status,
            Err(poisoned) => poisoned.into_inner().status,
        }
    }

    /// Wakes on each change (compare with [`Job::view`]'s status to know the end).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut JobView)) {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The jobs of this process.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<VecDeque<(String, Arc<Job>)>>,
}

impl Jobs {
    /// A job of `account_id` by id.
    pub fn get(&self, account_id: &str, id: &str) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock().ok()?;
        jobs.iter()
            .find(|(jid, job)| jid == id && job.account_id == account_id)
            .map(|(_, job)| job.clone())
    }

    /// The jobs of an account, newest first.
    pub fn of_account(&self, account_id: &str) -> Vec<JobView> {
        let Ok(jobs) = self.jobs.lock() else {
            return Vec::new();
        };
        jobs.iter()
            .rev()
            .filter(|(_, job)| job.account_id == account_id)
            .map(|(_, job)| job.view())
            .collect()
    }

    /// Starts importing the spooled file `file` (`size` bytes) into `opts.account`.
    pub fn start(
        &self,
        pipeline: Pipeline,
        file: tempfile::NamedTempFile,
        size: u64,
        opts: Options,
    ) -> Arc<Job> {
        let id = crate::domain::new_id();
        let job = Arc::new(Job {
            account_id: opts.account.clone().unwrap_or_default(),
            state: Mutex::new(JobView {
                id: id.clone(),
                account_id: opts.account.clone().unwrap_or_default(),
                status: Status::Running,
                dry_run: opts.dry_run,
                on_conflict: opts.on_conflict,
                bytes_read: 0,
                bytes_total: size,
                counts: Counts::default(),
                problems: Vec::new(),
                problems_not_kept: 0,
                error: None,
                started: crate::domain::now_gregorian(),
                finished: None,
            }),
            bytes_read: Arc::new(AtomicU64::new(0)),
            changed: tokio::sync::watch::channel(0).0,
        });
        if let Ok(mut jobs) = self.jobs.lock() {
            // Forget the oldest finished jobs past the cap; running ones always stay.
            while jobs
                .iter()
                .filter(|(_, j)| j.status() != Status::Running)
                .count()
                >= MAX_FINISHED
            {
                match jobs.iter().position(|(_, j)| j.status() != Status::Running) {
                    Some(i) => {
                        jobs.remove(i);
                    }
                    None => break,
                }
            }
            jobs.push_back((id, job.clone()));
        }
        let running = job.clone();
        tokio::spawn(async move {
            let result = async {
                let reopened = file.reopen()?;
                let counted = super::source::Counting::new(reopened, running.bytes_read.clone());
                let items =
                    super::source::spawn_reader(vec![Box::new(BufReader::new(counted))], 128);
                let mut observer = JobObserver { job: &running };
                let counts = import::run(&pipeline, items, &opts, Vec::new(), &mut observer)
                    .await
                    .map_err(anyhow::Error::from)?;
                drop(file);
                Ok::<_, anyhow::Error>(counts)
            }
            .await;
            running.update(|s| {
                s.finished = Some(crate::domain::now_gregorian());
                s.bytes_read = s.bytes_total;
                match result {
                    Ok(counts) => {
                        s.counts = counts;
                        s.status = Status::Done;
                    }
                    Err(e) => {
                        s.status = Status::Failed;
                        s.error = Some(e.to_string());
                    }
                }
            });
            let ended = running.view();
            tracing::info!(job = %ended.id, status = ?ended.status, "import job ended");
        });
        job
    }
}

struct JobObserver<'a> {
    job: &'a Job,
}

impl Observer for JobObserver<'_> {
    fn outcome(&mut self, outcome: &Outcome) {
        if matches!(outcome.action, Action::Failed | Action::Skipped) {
            let outcome = outcome.clone();
            self.job.update(|s| {
                if s.problems.len() < MAX_KEPT_PROBLEMS {
                    s.problems.push(outcome);
                } else {
                    s.problems_not_kept += 1;
                }
            });
        }
    }

    fn progress(&mut self, counts: &Counts) {
        let counts = counts.clone();
        self.job.update(|s| s.counts = counts);
    }
}

/// A server-sent event's data for a job: its counts and where it is (no problem list).
pub fn progress_event(view: &JobView) -> Value {
    json!({
        "id": view.id,
        "status": view.status,
        "bytes_read": view.bytes_read,
        "bytes_total": view.bytes_total,
        "counts": view.counts,
    })
}
