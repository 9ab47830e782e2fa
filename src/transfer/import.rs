//! The import: documents from a dump saved as API writes would save them (Kazoo's rules, the
//! same schema validation and uniqueness, patterns compiled), keeping Kazoo's ids, private
//! fields and revisions, in batched transactions.
//!
//! Owns deciding what each document becomes (created, replaced, unchanged, skipped, refused)
//! and saying so, one [`Outcome`] per document. Idempotent: a document equal to the stored one
//! (its public fields and deleted state) is left alone. A dry run makes every decision and
//! runs every check, in transactions that are rolled back, and keeps what the earlier
//! documents of the import would have claimed (ids, numbers, patterns, unique values) in
//! memory, so that it reports what the real run would do. Must not know about HTTP or
//! terminals: the caller hands in an [`Observer`].

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::api::error::ApiError;
use crate::documents::pipeline::{self, Kind, Pipeline};
use crate::domain::callflow as cf;
use crate::store::{
    Account, BatchWrite, CallflowWrite, ChangeOp, DocumentWrite, KeyConflict, KeyKind, StoreError,
    UniqueConflict, WriteMeta, USER_MD5_HASH, USER_SHA1_HASH,
};

use super::source::{Item, SourceDoc};

/// What happens to a document whose id is already used by a different document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Refuse it (an error in the report; the stored one stays).
    #[default]
    Fail,
    /// Keep the stored one and go on.
    Skip,
    /// Save the dump's version as a new revision of the stored one.
    Replace,
}

impl std::str::FromStr for OnConflict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            "replace" => Ok(Self::Replace),
            other => Err(format!(
                "on_conflict must be fail, skip or replace, not {other:?}"
            )),
        }
    }
}

/// How an import runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Every document goes to this account, whatever its dump says.
    pub account: Option<String>,
    /// Accounts the dump describes (`pvt_type: account` documents) are created when missing.
    pub create_accounts: bool,
    pub dry_run: bool,
    pub on_conflict: OnConflict,
    /// Recorded with every revision the import writes.
    pub message: String,
    /// Documents per transaction.
    pub batch_size: usize,
    pub request_id: String,
    /// Who imports: recorded with each revision and change-feed entry the import writes (the
    /// imported documents keep the dump's `pvt_auth_account_id`).
    pub auth_account_id: Option<String>,
    pub auth_user_id: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            account: None,
            create_accounts: false,
            dry_run: false,
            on_conflict: OnConflict::Fail,
            message: "import".into(),
            batch_size: 500,
            request_id: format!("import-{}", crate::auth::random_hex(8)),
            auth_account_id: None,
            auth_user_id: None,
        }
    }
}

/// What was done with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Replaced,
    Unchanged,
    Skipped,
    Failed,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub doc_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub action: Action,
    /// The revision written (or that a dry run would write), else the stored one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// Why it was refused or skipped, as Kazoo's error envelope (`error`, `message`, `data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// Counts so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counts {
    /// Documents read (those of ignored types included).
    pub read: u64,
    pub created: u64,
    pub replaced: u64,
    pub unchanged: u64,
    /// Conflicts left alone (`on_conflict=skip`).
    pub skipped: u64,
    pub failed: u64,
    pub accounts_created: u64,
    /// What was not imported, by document type or reason (design documents, types
    /// callflowd does not keep, rows without their document).
    pub ignored: BTreeMap<String, u64>,
}

impl Counts {
    fn count(&mut self, action: Action) {
        match action {
            Action::Created => self.created += 1,
            Action::Replaced => self.replaced += 1,
            Action::Unchanged => self.unchanged += 1,
            Action::Skipped => self.skipped += 1,
            Action::Failed => self.failed += 1,
        }
    }

    /// Documents written (or that a dry run would write).
    pub fn changed(&self) -> u64 {
        self.created + self.replaced + self.accounts_created
    }
}

/// Told about each document and about progress.
pub trait Observer: Send + Sync {
    fn outcome(&mut self, outcome: &Outcome);
    /// After each batch.
    fn progress(&mut self, counts: &Counts);
}

/// An import's fatal failure (the store gone, the file unreadable half-way); what was
/// committed before it stays (importing again finishes the job).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Broken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Most bytes (as held in memory) of the documents of one batch.
const MAX_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// The kinds of document an import keeps.
fn kind_of(doc_type: &str) -> Option<Kind> {
    match doc_type {
        "callflow" => Some(Kind::Callflow),
        t if t == crate::documents::ENTRY.pvt_type => Some(Kind::Doc(&crate::documents::ENTRY)),
        t => crate::documents::TYPES
            .iter()
            .find(|ty| ty.pvt_type == t)
            .map(Kind::Doc),
    }
}

/// A document ready to be written.
struct Planned {
    source: SourceDoc,
    kind: Kind,
    account: Account,
    /// Public fields (validated, defaults applied) and the dump's private ones.
    doc: Map<String, Value>,
    deleted: bool,
}

/// What a dry run remembers of the documents before: for each id, its type and public
/// fields; for each claimed value, the id holding it.
#[derive(Default)]
struct Overlay {
    docs: HashMap<(String, String), Existing>,
    claims: HashMap<(String, String), String>,
    /// Values a replaced document gave up: `(account, claim, its id)`. The store, whose dry-run
    /// transactions were rolled back, still sees them held; the real run would not.
    released: std::collections::HashSet<(String, String, String)>,
}

/// Runs an import of the documents arriving on `items`.
pub async fn run(
    pipeline: &Pipeline,
    mut items: tokio::sync::mpsc::Receiver<Item>,
    opts: &Options,
    accounts: Vec<SourceDoc>,
    observer: &mut dyn Observer,
) -> Result<Counts, ImportError> {
    let mut importer = Importer {
        pipeline,
        opts,
        counts: Counts::default(),
        accounts: HashMap::new(),
        planned_accounts: HashMap::new(),
        overlay: Overlay::default(),
        observer,
        holding: None,
        slot: 0,
        in_flight: None,
    };
    for doc in accounts {
        importer.account_doc(doc).await?;
    }
    let mut batch = Vec::with_capacity(opts.batch_size);
    // Large documents make smaller batches: a batch also ends past this many bytes in memory.
    let mut weight = 0u64;
    while let Some(item) = items.recv().await {
        match item {
            Item::Broken(message) => {
                importer.flush(std::mem::take(&mut batch)).await?;
                importer.complete().await?;
                return Err(ImportError::Broken(message));
            }
            Item::Skipped { reason } => {
                importer.counts.read += 1;
                importer.ignore(reason);
            }
            Item::Doc(doc) => {
                importer.counts.read += 1;
                if let Some(planned) = importer.plan(*doc).await? {
                    weight += crate::store::cached::map_weight(&planned.doc);
                    batch.push(planned);
                    if batch.len() >= opts.batch_size || weight >= MAX_BATCH_BYTES {
                        importer.flush(std::mem::take(&mut batch)).await?;
                        weight = 0;
                    }
                }
            }
        }
    }
    importer.flush(batch).await?;
    importer.complete().await?;
    Ok(importer.counts)
}

struct Importer<'a> {
    pipeline: &'a Pipeline,
    opts: &'a Options,
    counts: Counts,
    /// Accounts looked up so far (`None`: missing).
    accounts: HashMap<String, Option<Account>>,
    /// Accounts a dry run would have created.
    planned_accounts: HashMap<String, Account>,
    overlay: Overlay,
    observer: &'a mut dyn Observer,
    /// While a batch is decided and written, its outcomes wait here with their place in the
    /// batch, so that they are told in file order whatever step decided them.
    holding: Option<Vec<(usize, Outcome)>>,
    slot: usize,
    in_flight: Option<InFlight>,
}

impl Importer<'_> {
    fn ignore(&mut self, what: &str) {
        *self.counts.ignored.entry(what.to_string()).or_default() += 1;
    }

    fn report(&mut self, outcome: Outcome) {
        self.counts.count(outcome.action);
        match self.holding.as_mut() {
            Some(held) => held.push((self.slot, outcome)),
            None => self.observer.outcome(&outcome),
        }
    }

    fn refuse(&mut self, source: &SourceDoc, account_id: Option<&str>, error: Value) {
        self.report(Outcome {
            account_id: account_id.map(str::to_string),
            doc_type: source.doc_type.clone(),
            id: source.id.clone(),
            action: Action::Failed,
            rev: None,
            error: Some(error),
        });
    }

    fn meta(&self) -> WriteMeta {
        WriteMeta {
            auth_account_id: self.opts.auth_account_id.clone(),
            auth_user_id: self.opts.auth_user_id.clone(),
            message: Some(self.opts.message.clone()),
            dry_run: self.opts.dry_run,
            keep_revisions: self.pipeline.history.keep_revisions,
            legacy_history: false,
            consume_draft: None,
        }
    }

    async fn account(&mut self, id: &str) -> Result<Option<Account>, ImportError> {
        if let Some(planned) = self.planned_accounts.get(id) {
            return Ok(Some(planned.clone()));
        }
        if let Some(known) = self.accounts.get(id) {
            return Ok(known.clone());
        }
        let found = self.pipeline.store.get_account(id).await?;
        self.accounts.insert(id.to_string(), found.clone());
        Ok(found)
    }

    /// An account document of the dump, with `--create-accounts`: created when missing.
    async fn account_doc(&mut self, source: SourceDoc) -> Result<(), ImportError> {
        let Some(id) = source.id.clone() else {
            return Ok(());
        };
        let told = |action| Outcome {
            account_id: Some(id.clone()),
            doc_type: Some("account".into()),
            id: Some(id.clone()),
            action,
            rev: None,
            error: None,
        };
        if self.account(&id).await?.is_some() {
            self.report(told(Action::Unchanged));
            return Ok(());
        }
        let account = account_from(&id, &source.doc);
        if self.opts.dry_run {
            self.planned_accounts.insert(id.clone(), account);
            self.counts.accounts_created += 1;
            self.observer.outcome(&told(Action::Created));
            return Ok(());
        }
        match self
            .pipeline
            .store
            .create_account(&account, None, None)
            .await
        {
            Ok(created) => {
                self.accounts.insert(id.clone(), Some(created));
                self.counts.accounts_created += 1;
                self.observer.outcome(&told(Action::Created));
            }
            Err(e @ (StoreError::Taken(_) | StoreError::Conflict)) => {
                let error = error_json(ApiError::from(e));
                self.refuse(&source, Some(&id), error);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Validates a document; `None` when it was ignored or refused (already reported).
    async fn plan(&mut self, source: SourceDoc) -> Result<Option<Planned>, ImportError> {
        let doc_type = source.doc_type.clone().unwrap_or_default();
        if doc_type == "account" {
            // Handled before the documents (`--create-accounts`), or not at all.
            if !self.opts.create_accounts {
                self.ignore("account");
            }
            return Ok(None);
        }
        let Some(kind) = kind_of(&doc_type) else {
            let what = if doc_type.is_empty() {
                "no_type"
            } else {
                &doc_type
            };
            self.ignore(what);
            return Ok(None);
        };
        let account_id = self.opts.account.clone().or(source.account_id.clone());
        let Some(account_id) = account_id else {
            let error = error_json(ApiError::faulty_request(
                "the document names no account (pvt_account_id); import with --account",
            ));
            self.refuse(&source, None, error);
            return Ok(None);
        };
        let Some(account) = self.account(&account_id).await? else {
            let error = error_json(ApiError::invalid_account_id(&account_id));
            self.refuse(&source, Some(&account_id), error);
            return Ok(None);
        };
        if source.id.as_deref().is_none_or(str::is_empty) {
            let error = error_json(ApiError::invalid_field(crate::schema::SchemaError::at(
                "_id",
                "required",
                "an imported document must have an id",
            )));
            self.refuse(&source, Some(&account_id), error);
            return Ok(None);
        }
        let mut public = cf::public_part(&source.doc);
        // Users: `password` is write-only (hashed below); Kazoo never stores it.
        let password = match kind {
            Kind::Doc(ty) if ty.pvt_type == "user" => public
                .remove("password")
                .and_then(|v| v.as_str().map(str::to_string)),
            _ => None,
        };
        public.remove("confirm_password");
        let validated = match self.pipeline.validate(kind, &account, public).await {
            Ok(doc) => doc,
            Err(pipeline::Error::Internal(e)) => return Err(e.into()),
            Err(e) => {
                let error = error_json(ApiError::from(e));
                self.refuse(&source, Some(&account_id), error);
                return Ok(None);
            }
        };
        let mut doc = validated;
        if let Kind::Doc(ty) = kind {
            (ty.prepare)(&mut doc);
        }
        let deleted = source
            .doc
            .get("pvt_deleted")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // The dump's private fields stay, so Kazoo clients find what they knew; the account
        // ones follow the account the document now lives in.
        for (key, value) in &source.doc {
            if key.starts_with("pvt_") && !KAZOO_SECRETS.contains(&key.as_str()) {
                doc.insert(key.clone(), value.clone());
            }
        }
        doc.insert("_id".into(), json!(source.id));
        doc.insert("pvt_type".into(), json!(kind.pvt_type()));
        doc.insert("pvt_account_id".into(), json!(account.id));
        doc.insert(
            "pvt_account_db".into(),
            json!(crate::domain::account_db(&account.id)),
        );
        doc.entry("pvt_vsn").or_insert_with(|| json!("1"));
        doc.entry("pvt_created")
            .or_insert_with(|| json!(crate::domain::now_gregorian()));
        doc.entry("pvt_modified")
            .or_insert_with(|| json!(crate::domain::now_gregorian()));
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            doc.insert("password".into(), json!(password));
        }
        let doc = in_source_order(&source.doc, doc);
        let mut source = source;
        if kind.pvt_type() != "user" {
            // Only a user's credentials are read from the dump's document later: the rest of
            // it is not kept while the batch waits (memory stays flat with large documents).
            source.doc = Map::new();
        }
        Ok(Some(Planned {
            source,
            kind,
            account,
            doc,
            deleted,
        }))
    }

    /// Decides a batch and starts writing it; the write runs while the next batch is read
    /// and validated, and is completed (its outcomes told) before that batch is decided, so
    /// every decision sees what the batches before it wrote.
    async fn flush(&mut self, batch: Vec<Planned>) -> Result<(), ImportError> {
        self.complete().await?;
        if batch.is_empty() {
            return Ok(());
        }
        let stored = self.stored(&batch).await?;
        let mut writes = Vec::with_capacity(batch.len());
        let mut waiting: Vec<Waiting> = Vec::with_capacity(batch.len());
        self.holding = Some(Vec::with_capacity(batch.len()));
        for (slot, (mut planned, existing)) in batch.into_iter().zip(stored).enumerate() {
            self.slot = slot;
            let id = planned.source.id.clone().unwrap_or_default();
            let account_id = planned.account.id.clone();
            let pvt_type = planned.kind.pvt_type();
            let (action, expected_rev, released) = match existing {
                None => (Action::Created, None, Vec::new()),
                Some(existing) => {
                    let same_type = existing.doc_type == pvt_type;
                    let equal = same_type
                        && existing.deleted == planned.deleted
                        && cf::public_part(&existing.doc) == public_without_password(&planned.doc);
                    if equal {
                        self.report(Outcome {
                            account_id: Some(account_id),
                            doc_type: Some(pvt_type.into()),
                            id: Some(id),
                            action: Action::Unchanged,
                            rev: Some(existing.rev),
                            error: None,
                        });
                        continue;
                    }
                    match self.opts.on_conflict {
                        OnConflict::Skip => {
                            self.report(Outcome {
                                account_id: Some(account_id),
                                doc_type: Some(pvt_type.into()),
                                id: Some(id),
                                action: Action::Skipped,
                                rev: Some(existing.rev),
                                error: Some(conflict_error(&existing.doc_type)),
                            });
                            continue;
                        }
                        OnConflict::Replace if same_type => {
                            // What the stored document holds and this one does not.
                            let released = if self.opts.dry_run && !existing.deleted {
                                let kept = claims_of(&planned);
                                claims_in(planned.kind, &existing.doc)
                                    .into_iter()
                                    .filter(|c| !kept.contains(c))
                                    .collect()
                            } else {
                                Vec::new()
                            };
                            (Action::Replaced, Some(existing.rev), released)
                        }
                        _ => {
                            let error = conflict_error(&existing.doc_type);
                            self.refuse(&planned.source, Some(&account_id), error);
                            continue;
                        }
                    }
                }
            };
            if self.opts.dry_run {
                if let Some(error) = self.overlay_clash(&planned, &id) {
                    self.refuse(&planned.source, Some(&account_id), error);
                    continue;
                }
            }
            if let Err(e) = credentials(&mut planned).await {
                let error = error_json(ApiError::from(e));
                self.refuse(&planned.source, Some(&account_id), error);
                continue;
            }
            let new_rev = match &expected_rev {
                None => planned
                    .source
                    .rev
                    .clone()
                    .filter(|r| usable_rev(r))
                    .unwrap_or_else(|| cf::next_revision(None, &planned.doc)),
                Some(rev) => cf::next_revision(Some(rev), &planned.doc),
            };
            let item = Waiting {
                planned,
                action,
                slot,
                new_rev,
                expected_rev,
                released,
            };
            if self.opts.dry_run && self.planned_accounts.contains_key(&account_id) {
                // The account does not exist yet: nothing for the store to check it against
                // but the import's own earlier documents (the overlay).
                self.release_claims(&account_id, &id, &item.released);
                self.remember(&item.planned, &id, &item.new_rev);
                self.report(Outcome {
                    account_id: Some(account_id),
                    doc_type: Some(pvt_type.into()),
                    id: Some(id),
                    action,
                    rev: Some(item.new_rev),
                    error: None,
                });
                continue;
            }
            writes.push(self.write_of(&item));
            waiting.push(item);
        }
        let holding = self.holding.take().unwrap_or_default();
        let store = self.pipeline.store.clone();
        let meta = self.meta();
        let task = (!writes.is_empty())
            .then(|| tokio::spawn(async move { store.write_batch(writes, &meta).await }));
        self.in_flight = Some(InFlight {
            task,
            waiting,
            holding,
        });
        Ok(())
    }

    /// Completes the batch being written: its results, the routes it changed, its outcomes
    /// told in file order.
    async fn complete(&mut self) -> Result<(), ImportError> {
        let Some(InFlight {
            task,
            waiting,
            holding,
        }) = self.in_flight.take()
        else {
            return Ok(());
        };
        self.holding = Some(holding);
        let results = match task {
            None => Vec::new(),
            Some(task) => match task.await.map_err(anyhow::Error::from)? {
                Ok(results) => results,
                Err(StoreError::Unavailable(e)) => return Err(StoreError::Unavailable(e).into()),
                // The transaction itself failed: each write alone, so that the one at fault
                // gets the error and the others are saved.
                Err(_) => self.one_by_one(&waiting).await?,
            },
        };
        let mut touched: Vec<String> = Vec::new();
        for (item, result) in waiting.into_iter().zip(results) {
            self.slot = item.slot;
            let planned = item.planned;
            let id = planned.source.id.clone().unwrap_or_default();
            let account_id = planned.account.id.clone();
            let result = match result {
                Err(e) if self.opts.dry_run => self.forgive(&account_id, e),
                other => other,
            };
            match result {
                Ok(_) => {
                    if self.opts.dry_run {
                        self.release_claims(&account_id, &id, &item.released);
                        self.remember(&planned, &id, &item.new_rev);
                    }
                    if matches!(planned.kind, Kind::Callflow) && !touched.contains(&account_id) {
                        touched.push(account_id.clone());
                    }
                    self.report(Outcome {
                        account_id: Some(account_id),
                        doc_type: Some(planned.kind.pvt_type().into()),
                        id: Some(id),
                        action: item.action,
                        rev: Some(item.new_rev),
                        error: None,
                    });
                }
                Err(e) => {
                    let error = store_error_json(planned.kind, e);
                    self.refuse(&planned.source, Some(&account_id), error);
                }
            }
        }
        if !self.opts.dry_run {
            self.pipeline.feed.ring();
            for account_id in touched {
                // The next lookup reloads the account's routes (one rebuild per batch, not per
                // callflow).
                self.pipeline.routes.invalidate(&account_id);
            }
        }
        self.release();
        Ok(())
    }

    /// Tells the batch's outcomes in file order, then the progress.
    fn release(&mut self) {
        if let Some(mut held) = self.holding.take() {
            held.sort_by_key(|(slot, _)| *slot);
            for (_, outcome) in held {
                self.observer.outcome(&outcome);
            }
        }
        self.observer.progress(&self.counts);
    }

    /// Each write of a failed batch in a transaction of its own.
    async fn one_by_one(
        &self,
        waiting: &[Waiting],
    ) -> Result<Vec<Result<i64, StoreError>>, ImportError> {
        let meta = self.meta();
        let mut results = Vec::with_capacity(waiting.len());
        for item in waiting {
            match self
                .pipeline
                .store
                .write_batch(vec![self.write_of(item)], &meta)
                .await
            {
                Ok(mut one) => results.push(one.pop().unwrap_or_else(|| {
                    Err(StoreError::Other(anyhow::anyhow!(
                        "the store answered nothing for a write"
                    )))
                })),
                Err(StoreError::Unavailable(e)) => return Err(StoreError::Unavailable(e).into()),
                Err(e) => results.push(Err(e)),
            }
        }
        Ok(results)
    }

    fn write_of(&self, item: &Waiting) -> BatchWrite {
        let (planned, id) = (
            &item.planned,
            item.planned.source.id.as_deref().unwrap_or(""),
        );
        let (new_rev, expected_rev) = (item.new_rev.clone(), item.expected_rev.clone());
        let op = if expected_rev.is_some() {
            ChangeOp::Update
        } else {
            ChangeOp::Create
        };
        let doc = planned.doc.clone();
        match planned.kind {
            Kind::Callflow => BatchWrite::Callflow(CallflowWrite {
                account_id: planned.account.id.clone(),
                id: id.to_string(),
                expected_rev,
                new_rev,
                references: cf::references(&doc),
                numbers: pipeline::dedup(cf::string_list(&doc, "numbers")),
                patterns: pipeline::dedup(cf::string_list(&doc, "patterns")),
                doc,
                deleted: planned.deleted,
                op,
                request_id: self.opts.request_id.clone(),
                max_account_patterns: Some(self.pipeline.limits.max_patterns_per_account),
            }),
            Kind::Doc(ty) => BatchWrite::Document(DocumentWrite {
                account_id: planned.account.id.clone(),
                id: id.to_string(),
                doc_type: ty.pvt_type.to_string(),
                expected_rev,
                new_rev,
                keys: if planned.deleted {
                    Vec::new()
                } else {
                    ty.unique_keys(&doc)
                },
                doc,
                deleted: planned.deleted,
                op,
                request_id: self.opts.request_id.clone(),
            }),
        }
    }

    /// The stored document under each planned id (its type, revision, body, deleted flag);
    /// in a dry run, what the import's earlier documents would have left there.
    async fn stored(&self, batch: &[Planned]) -> Result<Vec<Option<Existing>>, ImportError> {
        let store = &self.pipeline.store;
        let mut by_account: HashMap<&str, Vec<String>> = HashMap::new();
        for p in batch {
            if !self.planned_accounts.contains_key(&p.account.id) {
                by_account
                    .entry(p.account.id.as_str())
                    .or_default()
                    .push(p.source.id.clone().unwrap_or_default());
            }
        }
        let mut present: HashMap<(String, String), String> = HashMap::new();
        for (account_id, ids) in by_account {
            for chunk in ids.chunks(200) {
                for (id, doc_type, _) in store.documents_by_ids(account_id, chunk).await? {
                    present.insert((account_id.to_string(), id), doc_type);
                }
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        for p in batch {
            let id = p.source.id.clone().unwrap_or_default();
            let key = (p.account.id.clone(), id.clone());
            if let Some(existing) = self.overlay.docs.get(&key) {
                out.push(Some(existing.clone()));
                continue;
            }
            let Some(doc_type) = present.get(&key) else {
                out.push(None);
                continue;
            };
            let found = if doc_type == "callflow" {
                store.get_callflow(&p.account.id, &id).await?
            } else {
                store
                    .get_document(&p.account.id, &id)
                    .await?
                    .map(|(_, d)| d)
            };
            out.push(Some(match found {
                Some(d) => Existing {
                    doc_type: doc_type.clone(),
                    rev: d.rev,
                    doc: d.doc,
                    deleted: d.deleted,
                },
                // A login user (kept apart from documents): the id is taken all the same.
                None => Existing {
                    doc_type: doc_type.clone(),
                    rev: String::new(),
                    doc: Map::new(),
                    deleted: false,
                },
            }));
        }
        Ok(out)
    }

    /// Values `planned` would claim that an earlier document of this dry run claimed.
    fn overlay_clash(&self, planned: &Planned, id: &str) -> Option<Value> {
        let account_id = &planned.account.id;
        if planned.deleted {
            return None;
        }
        let mut numbers = Vec::new();
        let mut keys = Vec::new();
        for (claim, holder) in claims_of(planned)
            .into_iter()
            .filter_map(|c| {
                self.overlay
                    .claims
                    .get(&(account_id.clone(), c.clone()))
                    .map(|h| (c, h))
            })
            .filter(|(_, holder)| holder.as_str() != id)
        {
            let (kind, value) = claim.split_once(':').unwrap_or(("", ""));
            match kind {
                "n" | "p" => numbers.push(UniqueConflict {
                    kind: if kind == "n" {
                        KeyKind::Number
                    } else {
                        KeyKind::Pattern
                    },
                    value: value.to_string(),
                    callflow_id: holder.clone(),
                    name: holder.clone(),
                }),
                _ => {
                    let (field, value) = value.split_once(':').unwrap_or(("", value));
                    keys.push(KeyConflict {
                        kind: field.to_string(),
                        value: value.to_string(),
                        doc_id: holder.clone(),
                    })
                }
            }
        }
        if !numbers.is_empty() {
            return Some(store_error_json(planned.kind, StoreError::Unique(numbers)));
        }
        if !keys.is_empty() {
            return Some(store_error_json(planned.kind, StoreError::KeyTaken(keys)));
        }
        None
    }

    /// A dry run: the values a replaced document gives up are free for the documents after it.
    fn release_claims(&mut self, account_id: &str, id: &str, released: &[String]) {
        for claim in released {
            let key = (account_id.to_string(), claim.clone());
            if self.overlay.claims.get(&key).map(String::as_str) == Some(id) {
                self.overlay.claims.remove(&key);
            }
            self.overlay
                .released
                .insert((account_id.to_string(), claim.clone(), id.to_string()));
        }
    }

    /// A dry run: a clash the store saw only because an earlier replace of this run was rolled
    /// back (every value it names was given up by its holder) is no clash in the real run.
    fn forgive(&self, account_id: &str, e: StoreError) -> Result<i64, StoreError> {
        let released = |claim: String, holder: &str| {
            self.overlay
                .released
                .contains(&(account_id.to_string(), claim, holder.to_string()))
        };
        let all_released = match &e {
            StoreError::Unique(conflicts) => conflicts.iter().all(|c| {
                let kind = match c.kind {
                    KeyKind::Number => "n",
                    KeyKind::Pattern => "p",
                };
                released(format!("{kind}:{}", c.value), &c.callflow_id)
            }),
            StoreError::KeyTaken(conflicts) => conflicts
                .iter()
                .all(|c| released(format!("k:{}:{}", c.kind, c.value), &c.doc_id)),
            _ => false,
        };
        if all_released {
            Ok(0)
        } else {
            Err(e)
        }
    }

    /// A dry run keeps what a written document would hold.
    fn remember(&mut self, planned: &Planned, id: &str, rev: &str) {
        let account_id = planned.account.id.clone();
        if !planned.deleted {
            for claim in claims_of(planned) {
                self.overlay
                    .claims
                    .insert((account_id.clone(), claim), id.to_string());
            }
        }
        self.overlay.docs.insert(
            (account_id, id.to_string()),
            Existing {
                doc_type: planned.kind.pvt_type().to_string(),
                rev: rev.to_string(),
                doc: public_without_password(&planned.doc),
                deleted: planned.deleted,
            },
        );
    }
}

/// A document decided and being written.
struct Waiting {
    planned: Planned,
    action: Action,
    /// Its place in the batch.
    slot: usize,
    new_rev: String,
    expected_rev: Option<String>,
    /// In a dry run: the values a replace gives up (see [`Overlay::released`]).
    released: Vec<String>,
}

/// What the store answers for a batch: one result per write, or the batch's failure.
type BatchAnswer = Result<Vec<Result<i64, StoreError>>, StoreError>;

/// The batch being written while the next one is read.
struct InFlight {
    task: Option<tokio::task::JoinHandle<BatchAnswer>>,
    waiting: Vec<Waiting>,
    holding: Vec<(usize, Outcome)>,
}

/// What a stored document is, for the decision.
#[derive(Clone)]
struct Existing {
    doc_type: String,
    rev: String,
    doc: Map<String, Value>,
    deleted: bool,
}

/// Private fields of Kazoo's that are never kept: unsalted credential hashes (a user's are
/// kept as argon2 hashes of them instead).
const KAZOO_SECRETS: &[&str] = &["pvt_md5_auth", "pvt_sha1_auth"];

/// `doc` with its keys in the order the dump had them (new ones after): an export imported
/// again is the same text.
fn in_source_order(source: &Map<String, Value>, mut doc: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(doc.len());
    for key in source.keys() {
        if let Some(value) = doc.shift_remove(key) {
            out.insert(key.clone(), value);
        }
    }
    out.extend(doc);
    out
}

/// The public fields, without a user's write-only password.
fn public_without_password(doc: &Map<String, Value>) -> Map<String, Value> {
    let mut public = cf::public_part(doc);
    public.remove("password");
    public
}

/// The values a document keeps unique in its account, as overlay keys.
fn claims_of(planned: &Planned) -> Vec<String> {
    claims_in(planned.kind, &planned.doc)
}

/// The values a document of `kind` keeps unique in its account, as overlay keys.
fn claims_in(kind: Kind, doc: &Map<String, Value>) -> Vec<String> {
    match kind {
        Kind::Callflow => cf::string_list(doc, "numbers")
            .into_iter()
            .map(|n| format!("n:{n}"))
            .chain(
                cf::string_list(doc, "patterns")
                    .into_iter()
                    .map(|p| format!("p:{p}")),
            )
            .collect(),
        Kind::Doc(ty) => ty
            .unique_keys(doc)
            .into_iter()
            .map(|(field, value)| format!("k:{field}:{value}"))
            .collect(),
    }
}

/// A user's credentials as the store keeps them: argon2 hashes of Kazoo's md5 and sha1
/// credential strings, from a `password` in the dump, or from Kazoo's own unsalted hashes
/// (so Kazoo users log in with their passwords after the move); callflowd's own hashes (an
/// export) are kept as they are.
async fn credentials(planned: &mut Planned) -> Result<(), pipeline::Error> {
    let Kind::Doc(ty) = planned.kind else {
        return Ok(());
    };
    if ty.pvt_type != "user" {
        return Ok(());
    }
    let doc = &mut planned.doc;
    let password = doc
        .remove("password")
        .and_then(|v| v.as_str().map(str::to_string));
    let username = doc
        .get("username")
        .and_then(Value::as_str)
        .map(str::to_string);
    let secrets = match (password, username) {
        (Some(password), Some(username)) => Some((
            crate::auth::md5_credentials(&username, &password),
            crate::auth::sha1_credentials(&username, &password),
        )),
        _ => {
            let kazoo = |k: &str| {
                planned
                    .source
                    .doc
                    .get(k)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            match (kazoo("pvt_md5_auth"), kazoo("pvt_sha1_auth")) {
                (Some(md5), Some(sha1))
                    if !(doc.contains_key(USER_MD5_HASH) && doc.contains_key(USER_SHA1_HASH)) =>
                {
                    Some((md5, sha1))
                }
                _ => None,
            }
        }
    };
    if let Some((md5, sha1)) = secrets {
        let hashes = crate::auth::hasher::pool()
            .run(move || -> anyhow::Result<(String, String)> {
                Ok((
                    crate::auth::hash_secret(&md5)?,
                    crate::auth::hash_secret(&sha1)?,
                ))
            })
            .await
            .map_err(|_| pipeline::Error::Busy)??;
        doc.insert(USER_MD5_HASH.into(), json!(hashes.0));
        doc.insert(USER_SHA1_HASH.into(), json!(hashes.1));
    }
    Ok(())
}

/// An account from a Kazoo account document.
fn account_from(id: &str, doc: &Map<String, Value>) -> Account {
    let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    let tree: Vec<String> = doc
        .get("pvt_tree")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let name = text("name").unwrap_or_else(|| id.to_string());
    let mut public = cf::public_part(doc);
    public.insert("name".into(), json!(name));
    Account {
        id: id.to_string(),
        name,
        realm: text("realm"),
        parent_id: tree.last().cloned(),
        tree,
        superduper: doc
            .get("pvt_superduper_admin")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        doc: public,
        created: doc
            .get("pvt_created")
            .and_then(Value::as_i64)
            .unwrap_or_else(crate::domain::now_gregorian),
    }
}

/// Kazoo's answer for a document id already taken by a different document.
fn conflict_error(stored_type: &str) -> Value {
    let mut e = error_json(ApiError::conflict());
    if let Value::Object(m) = &mut e {
        m.insert(
            "data".into(),
            json!({"message": format!("the id is already used by a different {stored_type} document")}),
        );
    }
    e
}

/// A store refusal as the API would answer it.
fn store_error_json(kind: Kind, e: StoreError) -> Value {
    match (kind, e) {
        (Kind::Doc(ty), StoreError::KeyTaken(conflicts)) => error_json(ApiError::from(
            pipeline::Error::Invalid(pipeline::key_errors(ty, conflicts)),
        )),
        (_, e) => error_json(ApiError::from(e)),
    }
}

/// Kazoo's error envelope (`error`, `message`, `data`) as a JSON value.
pub fn error_json(e: ApiError) -> Value {
    if let ApiError::Internal(cause) = &e {
        tracing::warn!(error = %cause, "import: a document could not be saved");
    }
    let mut body = e.into_answer().envelope();
    body.remove("status");
    Value::Object(body)
}

/// A revision a create may start from: `N-...` with N at least 1.
fn usable_rev(rev: &str) -> bool {
    matches!(rev.split_once('-'), Some((n, rest)) if n.parse::<u64>().is_ok_and(|n| n >= 1) && !rest.is_empty())
}
