//! The one save path for every account document: callflows, and each type in
//! [`super::TYPES`]. It validates (the type's schema, defaults applied, off the async workers),
//! applies the crossbar module's rewrites, stamps Kazoo's private fields, keeps the type's
//! unique values, and writes with a revision and a change record in one store transaction;
//! then it refreshes what depends on the write (the routing snapshot for callflows).
//!
//! Owns the request's `Map` by value from validation to the store. The per-type hooks are
//! only where Kazoo's crossbar module differs: callflows (numbers and patterns pre-checked,
//! compiled and kept unique; references recorded; routes refreshed) and users (write-only
//! `password` kept as hashes). Must not know about HTTP: callers hand in a [`Writer`] and the
//! raw `If-Match` value, and map [`Error`] to their answers.
//!
//! History lives here too, as writes: every save records who made it and why (the
//! [`Writer`]'s message) in the revision and the change feed; a dry run ([`Writer::dry_run`])
//! runs the whole write, store transaction and uniqueness checks included, then rolls it
//! back; [`Pipeline::rollback`] saves an earlier revision again (restoring a deleted
//! document); drafts and their publishing are in [`super::drafts`]. Every write passes the
//! gate ([`Pipeline::gate`]) where the call tests will run.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::domain::callflow::{self as cf, metadata_candidates};
use crate::history::feed::FeedSignal;
use crate::routing::RouteCache;
use crate::schema::{SchemaError, SchemaErrors, SchemaSet};
use crate::store::{
    Account, CallflowWrite, ChangeOp, DocumentWrite, DynStore, StoreError, StoredCallflow,
    WriteMeta,
};

use super::DocType;

/// Why a pipeline step refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document breaks a rule: Kazoo's per-field errors.
    #[error("validation failed")]
    Invalid(SchemaErrors),
    /// No live document of this type with this id (Kazoo's `bad_identifier`).
    #[error("no document {0}")]
    NotFound(String),
    /// `If-Match` names another revision (or a create carries one).
    #[error("precondition failed")]
    Stale,
    /// The type's schema is not loaded (a `--schemas-dir` without it).
    #[error("schema {0} is missing")]
    SchemaMissing(&'static str),
    /// Gating call tests would fail after the write: their names and first divergences.
    #[error("gating call tests failed")]
    TestsFailed(Value),
    /// The password hasher's queue is full.
    #[error("the password hasher is busy")]
    Busy,
    /// The document has no revision with this number (never written, or pruned).
    #[error("no revision {0}")]
    NoRevision(String),
    /// A rollback to a revision of another document type.
    #[error("revision {0} is not of this document type")]
    WrongType(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<SchemaErrors> for Error {
    fn from(errors: SchemaErrors) -> Self {
        Self::Invalid(errors)
    }
}

impl From<SchemaError> for Error {
    fn from(error: SchemaError) -> Self {
        Self::Invalid(SchemaErrors::single(error))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which kind of document a step works on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Callflow,
    Doc(&'static DocType),
}

impl Kind {
    pub fn pvt_type(self) -> &'static str {
        match self {
            Kind::Callflow => "callflow",
            Kind::Doc(ty) => ty.pvt_type,
        }
    }
}

/// The document a step addresses: its kind, id and, for documents that live under another
/// (a list's entries), the field that must name the parent.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: Kind,
    pub account_id: &'a str,
    pub id: &'a str,
    pub parent: Option<(&'static str, &'a str)>,
}

impl<'a> Target<'a> {
    pub fn new(kind: Kind, account_id: &'a str, id: &'a str) -> Self {
        Self {
            kind,
            account_id,
            id,
            parent: None,
        }
    }
}

/// Who writes: stamped into Kazoo's private fields and the change record.
#[derive(Debug, Clone)]
pub struct Writer {
    pub account: Account,
    pub request_id: String,
    /// The account the credentials belong to (`pvt_auth_account_id`).
    pub auth_account_id: String,
    /// The user behind the token, if any (`pvt_auth_user_id`).
    pub auth_user_id: Option<String>,
    /// `?skip_tests=true`: gating call tests do not run (recorded on the document).
    pub skip_tests: bool,
    /// Why: kept with the revision and the change (`commit_message` / `X-Commit-Message`).
    pub message: Option<String>,
    /// Run every check of the write, then keep nothing (`?dry_run=true`).
    pub dry_run: bool,
}

/// The limits a callflow save enforces (Kazoo has none).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_numbers_per_callflow: usize,
    pub max_patterns_per_callflow: usize,
    pub max_patterns_per_account: usize,
    /// Nodes in `flow`, the root and every child at any depth.
    pub max_flow_nodes: usize,
    /// Characters in one pattern.
    pub max_pattern_length: usize,
}

impl Default for Limits {
    /// The command line's defaults.
    fn default() -> Self {
        Self {
            max_numbers_per_callflow: 10_000,
            max_patterns_per_callflow: 1_000,
            max_patterns_per_account: 2_000,
            max_flow_nodes: 1_000,
            max_pattern_length: 1_024,
        }
    }
}

/// Nodes in a callflow's `flow`: the root and every child, at any depth.
pub fn flow_nodes(flow: &Value) -> usize {
    let mut count = 0;
    let mut stack = vec![flow];
    while let Some(node) = stack.pop() {
        let Value::Object(node) = node else { continue };
        count += 1;
        if let Some(Value::Object(children)) = node.get("children") {
            stack.extend(children.values());
        }
    }
    count
}

/// A document as written: id, new revision and the stored body (private fields included).
#[derive(Debug, Clone)]
pub struct Saved {
    pub id: String,
    pub rev: String,
    pub doc: Map<String, Value>,
    /// The call tests the write ran (see [`crate::lint::calltests::gate`]).
    pub tests: Option<Value>,
}

/// What the history keeps of each write.
#[derive(Debug, Clone, Copy)]
pub struct HistoryConfig {
    /// Revisions kept per document (`None`: every one).
    pub keep_revisions: Option<u64>,
    /// Record who, why and a feed position with each write. Off (writes recorded as before
    /// history existed) only to measure what history costs (`benches/http.rs`); nothing but the
    /// benchmark turns it off.
    pub record: bool,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            keep_revisions: None,
            record: true,
        }
    }
}

/// The save pipeline, cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    pub store: DynStore,
    pub schemas: SchemaSet,
    pub routes: Arc<RouteCache>,
    pub limits: Limits,
    pub history: HistoryConfig,
    /// Rung after every committed write, for change-feed followers.
    pub feed: FeedSignal,
}

impl Pipeline {
    /// The pipeline of a command-line tool, which may write beside a running server (its writes
    /// are announced, see [`crate::store::open_tool`]): embedded schemas, its own route cache.
    pub async fn open_tool(url: &str, limits: Limits) -> anyhow::Result<Self> {
        let store = crate::store::open_tool(url).await?;
        Ok(Self {
            store: store.clone(),
            schemas: SchemaSet::embedded()?,
            routes: Arc::new(RouteCache::new(
                store,
                crate::routing::cache::DEFAULT_BUDGET_BYTES,
            )),
            limits,
            history: HistoryConfig::default(),
            feed: FeedSignal::default(),
        })
    }

    /// The live document of this kind (and parent), else [`Error::NotFound`].
    pub async fn load(&self, target: Target<'_>) -> Result<StoredCallflow> {
        match self.load_any(target).await? {
            d if !d.deleted => Ok(d),
            _ => Err(Error::NotFound(target.id.to_string())),
        }
    }

    /// The document of this kind (and parent), soft-deleted or live, else
    /// [`Error::NotFound`].
    pub async fn load_any(&self, target: Target<'_>) -> Result<StoredCallflow> {
        let account_id = target.account_id;
        let stored = match target.kind {
            Kind::Callflow => self
                .store
                .get_callflow(account_id, target.id)
                .await?
                .filter(|d| {
                    d.doc
                        .get("pvt_type")
                        .map(|t| t == "callflow")
                        .unwrap_or(true)
                }),
            Kind::Doc(ty) => self
                .store
                .get_document(account_id, target.id)
                .await?
                .filter(|(doc_type, _)| doc_type == ty.pvt_type)
                .map(|(_, stored)| stored),
        };
        match stored {
            Some(d) if belongs(&d, target.parent) => Ok(d),
            _ => Err(Error::NotFound(target.id.to_string())),
        }
    }

    /// Creates the document under the id the request asks for (`_id` or `id`), else a new
    /// one. An id already used by any document of the account is refused by the store inside
    /// the write transaction (one id space per account, as one CouchDB database per account).
    pub async fn create(
        &self,
        kind: Kind,
        writer: &Writer,
        data: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<Saved> {
        // cowboy: `If-Match` on a PUT to a missing resource fails the precondition.
        if if_match.is_some() {
            return Err(Error::Stale);
        }
        let id = requested_id(&data);
        self.create_as(kind, writer, &id, data).await
    }

    /// Creates the document under `id` (list entries always get a new one).
    pub async fn create_as(
        &self,
        kind: Kind,
        writer: &Writer,
        id: &str,
        data: Map<String, Value>,
    ) -> Result<Saved> {
        let mut doc = self.validate(kind, &writer.account, data).await?;
        if let Kind::Doc(ty) = kind {
            (ty.prepare)(&mut doc);
            credentials(ty, None, &mut doc).await?;
        }
        doc.insert("_id".into(), json!(id));
        stamp_private(&mut doc, writer, true, kind.pvt_type());
        self.commit(kind, writer, id, None, doc, ChangeOp::Create)
            .await
    }

    /// Full replace: the request validated first, then the stored document checked against
    /// `If-Match`; its private fields are kept.
    pub async fn replace(
        &self,
        target: Target<'_>,
        writer: &Writer,
        data: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<Saved> {
        let public = self.validate(target.kind, &writer.account, data).await?;
        let stored = self.load(target).await?;
        check_if_match(if_match, &stored.rev)?;
        self.save_update(target.kind, writer, stored, public).await
    }

    /// Patch: the request merged over the stored document (`null` removes a key), validated,
    /// saved.
    pub async fn patch(
        &self,
        target: Target<'_>,
        writer: &Writer,
        data: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<Saved> {
        let stored = self.load(target).await?;
        check_if_match(if_match, &stored.rev)?;
        let merged = cf::merge_patch(&cf::public_part(&stored.doc), &cf::public_part(&data));
        let public = self.validate(target.kind, &writer.account, merged).await?;
        self.save_update(target.kind, writer, stored, public).await
    }

    /// Deletes: soft (`pvt_deleted`, unique values released) unless `hard`; a list takes its
    /// entries with it for good (`cb_lists`). Answers the document as it was.
    pub async fn delete(
        &self,
        target: Target<'_>,
        writer: &Writer,
        if_match: Option<&str>,
        hard: bool,
    ) -> Result<StoredCallflow> {
        let stored = self.load(target).await?;
        check_if_match(if_match, &stored.rev)?;
        let account_id = target.account_id;
        let mut pending = stored.doc.clone();
        let passed =
            crate::lint::calltests::gate(self, writer, target.kind, target.id, &mut pending, true)
                .await?;
        if let Kind::Doc(ty) = target.kind {
            if ty.pvt_type == "list" {
                for entry in self.entries_of(account_id, target.id).await? {
                    self.purge(target.kind, writer, &entry.id, &entry.rev)
                        .await?;
                }
            }
        }
        if hard {
            self.purge(target.kind, writer, target.id, &stored.rev)
                .await?;
        } else {
            let mut doc = pending;
            doc.insert("pvt_deleted".into(), json!(true));
            stamp_private(&mut doc, writer, false, target.kind.pvt_type());
            self.commit(
                target.kind,
                writer,
                target.id,
                Some(stored.rev.clone()),
                doc,
                ChangeOp::Delete,
            )
            .await?;
        }
        passed.keep(self, writer).await;
        Ok(stored)
    }

    /// Removes a document for good, with its revisions, in a task of its own (a client
    /// leaving half-way cannot stop it), refreshing routes after a callflow.
    pub async fn purge(&self, kind: Kind, writer: &Writer, id: &str, rev: &str) -> Result<()> {
        let meta = self.meta(writer);
        let (this, account_id, id, rev) = (
            self.clone(),
            writer.account.id.clone(),
            id.to_string(),
            rev.to_string(),
        );
        tokio::spawn(async move {
            let store_kind = match kind {
                Kind::Callflow => "callflow",
                Kind::Doc(_) => "document",
            };
            this.store
                .purge_as(store_kind, &account_id, &id, &rev, &meta)
                .await?;
            if !meta.dry_run {
                this.feed.ring();
                if let Kind::Callflow = kind {
                    this.refresh_routes(&account_id, &id).await;
                }
            }
            Ok::<_, Error>(())
        })
        .await
        .map_err(anyhow::Error::from)?
    }

    /// How the store records a write by `writer`.
    pub fn meta(&self, writer: &Writer) -> WriteMeta {
        WriteMeta {
            auth_account_id: Some(writer.auth_account_id.clone()),
            auth_user_id: writer.auth_user_id.clone(),
            message: writer.message.clone(),
            dry_run: writer.dry_run,
            keep_revisions: self.history.keep_revisions,
            legacy_history: !self.history.record,
            consume_draft: None,
        }
    }

    /// Saves revision `number` of a document again, as a new revision, after the full
    /// validation a replace gets (schema, uniqueness in the write transaction, the gate).
    /// On a soft-deleted document this is a restore: the document is live again. The stored
    /// private fields are kept (credentials included); `If-Match` is checked against the
    /// current revision.
    pub async fn rollback(
        &self,
        target: Target<'_>,
        writer: &Writer,
        number: i64,
        if_match: Option<&str>,
    ) -> Result<Saved> {
        let stored = self.load_any(target).await?;
        check_if_match(if_match, &stored.rev)?;
        let revision = self
            .store
            .revision(target.account_id, target.id, number)
            .await?
            .ok_or_else(|| Error::NoRevision(number.to_string()))?;
        if revision.info.doc_type != target.kind.pvt_type() {
            return Err(Error::WrongType(number.to_string()));
        }
        let public = self
            .validate(target.kind, &writer.account, cf::public_part(&revision.doc))
            .await?;
        let op = if stored.deleted {
            ChangeOp::Restore
        } else {
            ChangeOp::Rollback
        };
        let mut stored = stored;
        stored.doc.remove("pvt_deleted");
        self.save_as(target.kind, writer, stored, public, op).await
    }

    /// The live entries of a list, ordered by id.
    pub async fn entries_of(&self, account_id: &str, list_id: &str) -> Result<Vec<StoredCallflow>> {
        let all = self
            .store
            .list_documents(account_id, super::ENTRY.pvt_type, None, i64::MAX, false)
            .await?;
        Ok(all
            .into_iter()
            .filter(|d| d.doc.get("list_id").and_then(Value::as_str) == Some(list_id))
            .collect())
    }

    /// Names, numbers and types of the documents a flow refers to (`cb_callflows`'
    /// `metadata`), every candidate in one store query whatever its type; soft-deleted
    /// documents are found too (`open_cache_doc`).
    pub async fn metadata(&self, account_id: &str, flow: Option<&Value>) -> Result<Value> {
        let ids = metadata_candidates(flow);
        if ids.is_empty() {
            return Ok(json!({}));
        }
        let found: std::collections::HashMap<String, (String, Map<String, Value>)> = self
            .store
            .documents_by_ids(account_id, &ids)
            .await?
            .into_iter()
            .map(|(id, doc_type, doc)| (id, (doc_type, doc)))
            .collect();
        let mut out = Map::new();
        for id in ids {
            let Some((doc_type, doc)) = found.get(&id) else {
                continue;
            };
            // `name` (a user's is first and last name), `numbers` and `pvt_type`, each only
            // when the document has it.
            let mut m = Map::new();
            if doc_type == "user" {
                let name = ["first_name", "last_name"]
                    .iter()
                    .filter_map(|k| doc.get(*k).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                if !name.trim().is_empty() {
                    m.insert("name".into(), json!(name.trim()));
                }
            } else if let Some(name) = doc.get("name").filter(|v| !v.is_null()) {
                m.insert("name".into(), name.clone());
            }
            if let Some(numbers) = doc.get("numbers").filter(|v| !v.is_null()) {
                m.insert("numbers".into(), numbers.clone());
            }
            let pvt_type = doc
                .get("pvt_type")
                .cloned()
                .unwrap_or_else(|| json!(doc_type));
            m.insert("pvt_type".into(), pvt_type);
            out.insert(id, Value::Object(m));
        }
        Ok(Value::Object(out))
    }

    /// The stored private fields plus the new validated public part, saved on top of `stored`.
    async fn save_update(
        &self,
        kind: Kind,
        writer: &Writer,
        stored: StoredCallflow,
        public: Map<String, Value>,
    ) -> Result<Saved> {
        self.save_as(kind, writer, stored, public, ChangeOp::Update)
            .await
    }

    /// [`Pipeline::save_update`] recorded as `op`.
    async fn save_as(
        &self,
        kind: Kind,
        writer: &Writer,
        stored: StoredCallflow,
        public: Map<String, Value>,
        op: ChangeOp,
    ) -> Result<Saved> {
        let mut doc = cf::private_part(&stored.doc);
        doc.extend(public);
        if let Kind::Doc(ty) = kind {
            (ty.prepare)(&mut doc);
            credentials(ty, Some(&stored.doc), &mut doc).await?;
        }
        stamp_private(&mut doc, writer, false, kind.pvt_type());
        self.commit(kind, writer, &stored.id, Some(stored.rev), doc, op)
            .await
    }

    /// Validation off the async workers: the type's schema with defaults applied, and for
    /// callflows Kazoo's number and pattern pre-checks and our limits. Saves run it; so do
    /// drafts that are simulated, not saved.
    pub async fn validate(
        &self,
        kind: Kind,
        account: &Account,
        data: Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let schema = match kind {
            Kind::Callflow => "callflows",
            Kind::Doc(ty) => ty.schema,
        };
        if !self.schemas.contains(schema) {
            return Err(Error::SchemaMissing(schema));
        }
        let (this, account) = (self.clone(), account.clone());
        crate::cpu::offload(move || match kind {
            Kind::Callflow => this.validate_callflow(&account, data),
            Kind::Doc(ty) => {
                let mut value = Value::Object(cf::public_part(&data));
                this.schemas.validate(ty.schema, &mut value)?;
                match value {
                    Value::Object(map) => Ok(map),
                    _ => Err(anyhow::anyhow!("schema {} accepted a non-object", ty.schema).into()),
                }
            }
        })
        .await?
    }

    /// Kazoo's callflow validation on request data: private keys dropped, numbers and
    /// patterns pre-checked and normalised, schema with defaults, then every pattern compiled.
    fn validate_callflow(
        &self,
        account: &Account,
        data: Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let mut public = cf::public_part(&data);
        drop(data);
        self.check_list_limits(&public)?;
        cf::precheck_numbers(
            &mut public,
            &crate::domain::numbers::dial_plan_of(account.doc.get("dial_plan")),
        )?;
        // Pattern compile errors are reported together with the schema's, so one round trip
        // shows everything wrong with the document.
        let mut errors = SchemaErrors::default();
        for (i, p) in cf::string_list(&public, "patterns").iter().enumerate() {
            if let Err(e) = crate::routing::pattern::compile_routing(p) {
                errors.push(
                    SchemaError::new(
                        vec!["patterns".into(), i.to_string()],
                        "error",
                        format!("invalid regular expression: {e}"),
                    )
                    .with("value", json!(p)),
                );
            }
        }
        let mut value = Value::Object(public);
        if let Err(schema_errors) = self.schemas.validate("callflows", &mut value) {
            errors.extend(schema_errors);
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        match value {
            Value::Object(public) => Ok(public),
            _ => Err(anyhow::anyhow!("validated callflow is not an object").into()),
        }
    }

    /// The configured caps on numbers and patterns per callflow (Kazoo has none; a callflow
    /// with 50,000 numbers is a mistake or an attack, and costs every later lookup and save).
    fn check_list_limits(&self, doc: &Map<String, Value>) -> Result<()> {
        let mut errors = SchemaErrors::default();
        for (field, limit) in [
            ("numbers", self.limits.max_numbers_per_callflow),
            ("patterns", self.limits.max_patterns_per_callflow),
        ] {
            if let Some(Value::Array(items)) = doc.get(field) {
                if items.len() > limit {
                    errors.push(
                        SchemaError::at(
                            field,
                            "maxItems",
                            format!("The list is more than {limit} items"),
                        )
                        .with("target", json!(limit)),
                    );
                }
            }
        }
        if let Some(Value::Array(patterns)) = doc.get("patterns") {
            let limit = self.limits.max_pattern_length;
            for (i, pattern) in patterns.iter().enumerate() {
                if pattern.as_str().is_some_and(|p| p.chars().count() > limit) {
                    errors.push(
                        SchemaError::new(
                            vec!["patterns".into(), i.to_string()],
                            "maxLength",
                            format!("String must not be more than {limit} characters"),
                        )
                        .with("target", json!(limit)),
                    );
                }
            }
        }
        if let Some(flow) = doc.get("flow") {
            let (limit, nodes) = (self.limits.max_flow_nodes, flow_nodes(flow));
            if nodes > limit {
                errors.push(
                    SchemaError::at(
                        "flow",
                        "maxItems",
                        format!("The flow is more than {limit} nodes"),
                    )
                    .with("target", json!(limit)),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.into())
        }
    }

    /// Writes in a task of its own, so a client that leaves half-way cannot stop the write or
    /// the routing refresh after the commit. A clash on a unique value becomes the type's
    /// Kazoo error.
    pub(super) async fn commit(
        &self,
        kind: Kind,
        writer: &Writer,
        id: &str,
        expected_rev: Option<String>,
        doc: Map<String, Value>,
        op: ChangeOp,
    ) -> Result<Saved> {
        self.commit_with(kind, writer, id, expected_rev, doc, op, self.meta(writer))
            .await
    }

    /// [`Pipeline::commit`] recorded as `meta` says. The saved call tests the write could
    /// change run first (the gate, [`crate::lint::calltests::gate`]): a failing gated test
    /// refuses it; the results are kept and answered with the saved document.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit_with(
        &self,
        kind: Kind,
        writer: &Writer,
        id: &str,
        expected_rev: Option<String>,
        mut doc: Map<String, Value>,
        op: ChangeOp,
        meta: WriteMeta,
    ) -> Result<Saved> {
        if op == ChangeOp::Delete {
            // A delete runs the gate itself, before anything (a list's entries) is removed.
            return self
                .commit_ungated(kind, writer, id, expected_rev, doc, op, meta)
                .await;
        }
        let passed = crate::lint::calltests::gate(self, writer, kind, id, &mut doc, false).await?;
        let saved = self
            .commit_ungated(kind, writer, id, expected_rev, doc, op, meta)
            .await?;
        Ok(passed.attach(self, writer, saved).await)
    }

    /// The write itself, in a task of its own.
    #[allow(clippy::too_many_arguments)]
    async fn commit_ungated(
        &self,
        kind: Kind,
        writer: &Writer,
        id: &str,
        expected_rev: Option<String>,
        doc: Map<String, Value>,
        op: ChangeOp,
        meta: WriteMeta,
    ) -> Result<Saved> {
        let this = self.clone();
        let new_rev = cf::next_revision(expected_rev.as_deref(), &doc);
        let (account_id, request_id, id) = (
            writer.account.id.clone(),
            writer.request_id.clone(),
            id.to_string(),
        );
        let deleted = op == ChangeOp::Delete;
        tokio::spawn(async move {
            match kind {
                Kind::Callflow => {
                    let write = CallflowWrite {
                        account_id,
                        id,
                        new_rev,
                        expected_rev,
                        // The document keeps what was sent; the uniqueness rows are one per
                        // value (Kazoo stores `["^a$","^a$"]`: `validate_unique_patterns`
                        // only looks at other callflows).
                        references: cf::references(&doc),
                        numbers: dedup(cf::string_list(&doc, "numbers")),
                        patterns: dedup(cf::string_list(&doc, "patterns")),
                        doc,
                        deleted,
                        op,
                        request_id,
                        max_account_patterns: Some(this.limits.max_patterns_per_account),
                    };
                    this.store.write_callflow_as(&write, &meta).await?;
                    if !meta.dry_run {
                        this.feed.ring();
                        this.refresh_routes(&write.account_id, &write.id).await;
                    }
                    Ok(Saved {
                        id: write.id,
                        rev: write.new_rev,
                        doc: write.doc,
                        tests: None,
                    })
                }
                Kind::Doc(ty) => {
                    let write = DocumentWrite {
                        account_id,
                        id,
                        doc_type: ty.pvt_type.to_string(),
                        new_rev,
                        expected_rev,
                        keys: ty.unique_keys(&doc),
                        doc,
                        deleted,
                        op,
                        request_id,
                    };
                    match this.store.write_document_as(&write, &meta).await {
                        Ok(_) => {
                            if !meta.dry_run {
                                this.feed.ring();
                            }
                            Ok(Saved {
                                id: write.id,
                                rev: write.new_rev,
                                doc: write.doc,
                                tests: None,
                            })
                        }
                        Err(StoreError::KeyTaken(conflicts)) => {
                            Err(Error::Invalid(key_errors(ty, conflicts)))
                        }
                        Err(other) => Err(other.into()),
                    }
                }
            }
        })
        .await
        .map_err(anyhow::Error::from)?
    }

    /// Make a committed write visible to this node's lookups before answering. The write
    /// itself succeeded, so a failure here only drops the snapshot (the next lookup reloads).
    async fn refresh_routes(&self, account_id: &str, callflow_id: &str) {
        if let Err(error) = self.routes.refresh(account_id, callflow_id).await {
            tracing::warn!(%error, account_id, "routing refresh failed; snapshot dropped");
            self.routes.invalidate(account_id);
        }
    }
}

/// Whether a stored document sits under the required parent.
fn belongs(stored: &StoredCallflow, parent: Option<(&str, &str)>) -> bool {
    parent.is_none_or(|(field, id)| stored.doc.get(field).and_then(Value::as_str) == Some(id))
}

/// Kazoo's errors for values another document of the account holds.
pub fn key_errors(ty: &DocType, conflicts: Vec<crate::store::KeyConflict>) -> SchemaErrors {
    SchemaErrors(
        conflicts
            .into_iter()
            .map(|c| {
                let rule = ty.rule(&c.kind);
                let message = rule.map(|r| r.message).unwrap_or("already in use");
                let path = c.kind.split('.').map(str::to_string).collect();
                let error = SchemaError::new(path, "unique", message);
                if rule.is_none_or(|r| r.cause) {
                    error.with("cause", json!(c.value))
                } else {
                    error
                }
            })
            .collect(),
    )
}

/// `If-Match` naming another revision fails the precondition: 412, as cowboy's REST flow
/// answers it for Kazoo (checked against `api_resource:generate_etag`).
pub fn check_if_match(if_match: Option<&str>, current: &str) -> Result<()> {
    match if_match.map(|v| v.trim().trim_matches('"')) {
        Some(wanted) if wanted != "*" && wanted != current => Err(Error::Stale),
        _ => Ok(()),
    }
}

/// The id a create asks for (`_id` or `id`), else a new one.
pub fn requested_id(data: &Map<String, Value>) -> String {
    ["_id", "id"]
        .iter()
        .find_map(|k| {
            data.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_string)
        .unwrap_or_else(crate::domain::new_id)
}

/// The private fields Kazoo refreshes on every save (`crossbar_doc:update_pvt_parameters`);
/// a stored `pvt_type` is kept, else `pvt_type` is set.
pub(super) fn stamp_private(
    doc: &mut Map<String, Value>,
    writer: &Writer,
    first_save: bool,
    pvt_type: &str,
) {
    let now = crate::domain::now_gregorian();
    let account_id = &writer.account.id;
    doc.insert(
        "pvt_type".into(),
        doc.get("pvt_type")
            .cloned()
            .unwrap_or_else(|| json!(pvt_type)),
    );
    doc.entry("pvt_vsn").or_insert_with(|| json!("1"));
    doc.entry("pvt_account_id")
        .or_insert_with(|| json!(account_id));
    doc.entry("pvt_account_db")
        .or_insert_with(|| json!(crate::domain::account_db(account_id)));
    if first_save {
        doc.insert("pvt_created".into(), json!(now));
    }
    doc.insert("pvt_modified".into(), json!(now));
    doc.insert("pvt_request_id".into(), json!(writer.request_id));
    doc.insert("pvt_is_authenticated".into(), json!(true));
    doc.insert("pvt_auth_account_id".into(), json!(writer.auth_account_id));
    match &writer.auth_user_id {
        Some(owner) => doc.insert("pvt_auth_user_id".into(), json!(owner)),
        None => doc.remove("pvt_auth_user_id"),
    };
    match doc
        .get("name")
        .and_then(Value::as_str)
        .map(cf::alphanum_name)
    {
        Some(n) => doc.insert("pvt_alphanum_name".into(), json!(n)),
        None => doc.remove("pvt_alphanum_name"),
    };
}

/// The values in first-seen order, each once.
pub fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    values
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect()
}

/// A user's credentials, as `kzd_users` handles them: `password` is write-only, kept only as
/// argon2 hashes of Kazoo's md5 and sha1 credential strings (`"<username>:<password>"`); a
/// password without a username gets a generated one (`user_<16 hex>`); a new username needs a
/// password; a user with no username keeps no credentials.
async fn credentials(
    ty: &DocType,
    previous: Option<&Map<String, Value>>,
    doc: &mut Map<String, Value>,
) -> Result<()> {
    use crate::store::{USER_MD5_HASH, USER_SHA1_HASH};
    if ty.pvt_type != "user" {
        return Ok(());
    }
    let password = doc
        .remove("password")
        .and_then(|v| v.as_str().map(str::to_string));
    doc.remove("confirm_password");
    let username = doc
        .get("username")
        .and_then(Value::as_str)
        .map(str::to_string);
    let previous_username = previous
        .and_then(|p| p.get("username"))
        .and_then(Value::as_str);
    match (username, password) {
        (username, Some(password)) if !password.is_empty() => {
            let username = match username {
                Some(u) => u,
                None => {
                    let generated = format!("user_{}", crate::auth::random_hex(8));
                    doc.insert("username".into(), json!(generated));
                    generated
                }
            };
            let hashes = crate::auth::hasher::pool()
                .run(move || -> anyhow::Result<(String, String)> {
                    Ok((
                        crate::auth::hash_secret(&crate::auth::md5_credentials(
                            &username, &password,
                        ))?,
                        crate::auth::hash_secret(&crate::auth::sha1_credentials(
                            &username, &password,
                        ))?,
                    ))
                })
                .await
                .map_err(|_| Error::Busy)??;
            doc.insert(USER_MD5_HASH.into(), json!(hashes.0));
            doc.insert(USER_SHA1_HASH.into(), json!(hashes.1));
        }
        (Some(username), _) if previous_username != Some(username.as_str()) => {
            return Err(SchemaError::at(
                "password",
                "required",
                "The password must be provided when creating / updating the user name",
            )
            .into());
        }
        (Some(_), _) => {}
        (None, _) => {
            doc.remove(USER_MD5_HASH);
            doc.remove(USER_SHA1_HASH);
        }
    }
    Ok(())
}
