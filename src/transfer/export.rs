//! The export: every document of one account or of all, as NDJSON, one record per line:
//! `{"type","account_id","id","rev","deleted","doc"}` with the stored document whole (Kazoo's
//! private fields included), accounts first. Streamed page by page; nothing but one page is
//! held in memory. An export imported into an empty store gives the same documents back.
//!
//! Not exported: drafts, the revision history, and the login users made with an account
//! (`create-account`), which live apart from the account's user documents.

use serde_json::{json, Map, Value};

use crate::store::{Account, DynStore, StoreError, StoredCallflow};

/// Rows read per store query.
const PAGE: i64 = 500;

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// One account (`None`: every account).
    pub account: Option<String>,
    /// Only these document types (`pvt_type`s: `callflow`, `device`, ...; empty: all).
    pub types: Vec<String>,
    /// Soft-deleted documents too (imported back as deleted, so they can be restored).
    pub include_deleted: bool,
}

/// Every document type an export can hold, in the order it writes them.
pub fn exportable_types() -> Vec<&'static str> {
    std::iter::once("callflow")
        .chain(crate::documents::TYPES.iter().map(|t| t.pvt_type))
        .chain(std::iter::once(crate::documents::ENTRY.pvt_type))
        .collect()
}

/// Checks `--type` names; the unknown ones are the error.
pub fn check_types(types: &[String]) -> Result<(), String> {
    let mut known = exportable_types();
    known.push("account");
    let unknown: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| !known.contains(t))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown document type {}; known: {}",
            unknown.join(", "),
            known.join(", ")
        ))
    }
}

/// One NDJSON line (without its newline).
pub fn record(doc_type: &str, account_id: &str, doc: &StoredCallflow) -> String {
    let line = json!({
        "type": doc_type,
        "account_id": account_id,
        "id": doc.id,
        "rev": doc.rev,
        "deleted": doc.deleted,
        "doc": doc.doc,
    });
    line.to_string()
}

/// An account's line: its public document with the fields an import needs to make it again.
pub fn account_record(account: &Account) -> String {
    let mut doc: Map<String, Value> = account.doc.clone();
    doc.insert("_id".into(), json!(account.id));
    doc.insert("name".into(), json!(account.name));
    if let Some(realm) = &account.realm {
        doc.insert("realm".into(), json!(realm));
    }
    doc.insert("pvt_type".into(), json!("account"));
    doc.insert("pvt_tree".into(), json!(account.tree));
    doc.insert("pvt_created".into(), json!(account.created));
    if account.superduper {
        doc.insert("pvt_superduper_admin".into(), json!(true));
    }
    json!({
        "type": "account",
        "account_id": account.id,
        "id": account.id,
        "doc": doc,
    })
    .to_string()
}

/// Counts of an export.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExportCounts {
    pub accounts: u64,
    pub documents: u64,
}

/// Streams the export into `out`, one line per item; stops early (without error) when the
/// receiver goes away.
pub async fn export(
    store: &DynStore,
    opts: &ExportOptions,
    out: tokio::sync::mpsc::Sender<String>,
) -> Result<ExportCounts, StoreError> {
    let mut counts = ExportCounts::default();
    let accounts = match &opts.account {
        Some(id) => match store.get_account(id).await? {
            Some(a) => vec![a],
            None => return Err(StoreError::NotFound),
        },
        None => store.all_accounts().await?,
    };
    let wanted = |t: &str| opts.types.is_empty() || opts.types.iter().any(|w| w == t);
    if wanted("account") || opts.types.is_empty() {
        for account in &accounts {
            if out.send(account_record(account)).await.is_err() {
                return Ok(counts);
            }
            counts.accounts += 1;
        }
    }
    for account in &accounts {
        for doc_type in exportable_types() {
            if !wanted(doc_type) {
                continue;
            }
            for deleted in [false, true] {
                if deleted && !opts.include_deleted {
                    continue;
                }
                let mut start: Option<String> = None;
                loop {
                    let page =
                        page(store, &account.id, doc_type, deleted, start.as_deref()).await?;
                    let mut last = None;
                    let full = page.len() as i64 >= PAGE;
                    for doc in page {
                        // Pages start at the last id of the one before (inclusive).
                        if start.as_deref() == Some(doc.id.as_str()) {
                            continue;
                        }
                        if out.send(record(doc_type, &account.id, &doc)).await.is_err() {
                            return Ok(counts);
                        }
                        counts.documents += 1;
                        last = Some(doc.id);
                    }
                    match last {
                        Some(id) if full => start = Some(id),
                        _ => break,
                    }
                }
            }
        }
    }
    Ok(counts)
}

async fn page(
    store: &DynStore,
    account_id: &str,
    doc_type: &str,
    deleted: bool,
    start: Option<&str>,
) -> Result<Vec<StoredCallflow>, StoreError> {
    match (doc_type, deleted) {
        ("callflow", false) => store.list_callflows(account_id, start, PAGE, false).await,
        ("callflow", true) => {
            store
                .list_deleted(account_id, None, start, PAGE, false)
                .await
        }
        (t, false) => {
            store
                .list_documents(account_id, t, start, PAGE, false)
                .await
        }
        (t, true) => {
            store
                .list_deleted(account_id, Some(t), start, PAGE, false)
                .await
        }
    }
}
