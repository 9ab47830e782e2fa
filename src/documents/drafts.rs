//! Callflow drafts: one working copy beside each live callflow (or of a callflow not created
//! yet), validated like a save but never routed, and made live by a publish.
//!
//! Owns: the draft life cycle (save, patch, discard, publish) and its rules: a draft starts
//! from the live revision (its `base_rev`); `If-Match` on a draft edit names the draft's rev
//! (or, before a draft exists, the live rev it starts from); a publish validates the draft
//! as a save, claims its numbers and patterns inside the write transaction, removes the draft
//! in that same transaction, and with `If-Match` refuses (412) when the live callflow moved
//! since. Must not know about HTTP or SQL.

use serde_json::{json, Map, Value};

use crate::domain::callflow as cf;
use crate::store::{ChangeOp, Draft, DraftWrite, StoreError, StoredCallflow};

use super::pipeline::{
    check_if_match, requested_id, stamp_private, Error, Kind, Pipeline, Result, Saved, Target,
    Writer,
};

impl Pipeline {
    /// The callflow's draft, else [`Error::NotFound`].
    pub async fn draft(&self, account_id: &str, callflow_id: &str) -> Result<Draft> {
        self.store
            .get_draft(account_id, callflow_id)
            .await?
            .ok_or_else(|| Error::NotFound(callflow_id.to_string()))
    }

    /// Every draft of the account, by callflow id.
    pub async fn drafts(&self, account_id: &str) -> Result<Vec<Draft>> {
        Ok(self.store.list_drafts(account_id).await?)
    }

    /// `PUT .../callflows/drafts`: a draft of a callflow that does not exist yet, under the id
    /// the data asks for (else a new one). The id must be free in the account.
    pub async fn create_draft(
        &self,
        writer: &Writer,
        data: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<Draft> {
        if if_match.is_some() {
            return Err(Error::Stale);
        }
        let id = requested_id(&data);
        let doc = self.validate(Kind::Callflow, &writer.account, data).await?;
        self.write_draft(writer, &id, None, None, true, doc).await
    }

    /// `POST .../callflows/{ID}/draft`: the whole draft, replacing any earlier one; the first
    /// one starts from the live callflow (which must exist).
    pub async fn save_draft(
        &self,
        writer: &Writer,
        callflow_id: &str,
        data: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<Draft> {
        let doc = self.validate(Kind::Callflow, &writer.account, data).await?;
        let (current, base) = self.draft_base(writer, callflow_id, if_match).await?;
        self.save_draft_doc(writer, callflow_id, current, base, doc)
            .await
    }

    /// `PATCH .../callflows/{ID}/draft`: merged over the draft, or over the live callflow when
    /// there is no draft yet.
    pub async fn patch_draft(
        &self,
        writer: &Writer,
        callflow_id: &str,
        data: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<Draft> {
        let (current, base) = self.draft_base(writer, callflow_id, if_match).await?;
        let from = match (&current, &base) {
            (Some(d), _) => cf::public_part(&d.doc),
            (None, Some(live)) => cf::public_part(&live.doc),
            (None, None) => Map::new(),
        };
        let merged = cf::merge_patch(&from, &cf::public_part(&data));
        let doc = self
            .validate(Kind::Callflow, &writer.account, merged)
            .await?;
        self.save_draft_doc(writer, callflow_id, current, base, doc)
            .await
    }

    /// `DELETE .../callflows/{ID}/draft`: the draft is discarded; answers it as it was.
    pub async fn discard_draft(
        &self,
        writer: &Writer,
        callflow_id: &str,
        if_match: Option<&str>,
    ) -> Result<Draft> {
        let draft = self.draft(&writer.account.id, callflow_id).await?;
        check_if_match(if_match, &draft.rev)?;
        let meta = self.meta(writer);
        self.store
            .delete_draft(
                &writer.account.id,
                callflow_id,
                &draft.rev,
                &writer.request_id,
                &meta,
            )
            .await?;
        if !meta.dry_run {
            self.feed.ring();
        }
        Ok(draft)
    }

    /// `PUT .../callflows/{ID}/draft/publish`: the draft becomes the live callflow in one
    /// transaction (validated as a save, its numbers and patterns claimed, the gate passed,
    /// the draft removed). `If-Match` names the live revision the client expects to replace
    /// (the draft's `base_rev`): another change since is refused with 412, as every stale
    /// `If-Match` is. The live callflow's private fields are kept; a deleted one is live again.
    pub async fn publish(
        &self,
        writer: &Writer,
        callflow_id: &str,
        if_match: Option<&str>,
    ) -> Result<Saved> {
        let account_id = writer.account.id.as_str();
        let draft = self.draft(account_id, callflow_id).await?;
        let live = self.store.get_callflow(account_id, callflow_id).await?;
        match (&live, if_match) {
            (None, Some(_)) => return Err(Error::Stale),
            (Some(live), wanted) => check_if_match(wanted, &live.rev)?,
            (None, None) => {}
        }
        // A draft of a new callflow whose id someone took meanwhile must not overwrite it.
        if draft.base_rev.is_none() && live.is_some() {
            return Err(StoreError::Conflict.into());
        }
        let public = self
            .validate(Kind::Callflow, &writer.account, draft.doc)
            .await?;
        let (mut doc, expected, first) = match live {
            Some(live) => {
                let mut doc = cf::private_part(&live.doc);
                doc.remove("pvt_deleted");
                (doc, Some(live.rev), false)
            }
            None => {
                let mut doc = Map::new();
                doc.insert("_id".into(), json!(callflow_id));
                (doc, None, true)
            }
        };
        doc.extend(public);
        stamp_private(&mut doc, writer, first, "callflow");
        // The saved call tests the publish could change run in the commit, as for any write.
        let mut meta = self.meta(writer);
        meta.consume_draft = Some(draft.rev);
        self.commit_with(
            Kind::Callflow,
            writer,
            callflow_id,
            expected,
            doc,
            ChangeOp::Publish,
            meta,
        )
        .await
    }

    /// The draft being edited, or (before there is one) the live callflow it starts from,
    /// with `If-Match` checked against the draft's rev, or the live rev.
    async fn draft_base(
        &self,
        writer: &Writer,
        callflow_id: &str,
        if_match: Option<&str>,
    ) -> Result<(Option<Draft>, Option<StoredCallflow>)> {
        let account_id = writer.account.id.as_str();
        match self.store.get_draft(account_id, callflow_id).await? {
            Some(draft) => {
                check_if_match(if_match, &draft.rev)?;
                Ok((Some(draft), None))
            }
            None => {
                let target = Target::new(Kind::Callflow, account_id, callflow_id);
                let live = self.load(target).await?;
                check_if_match(if_match, &live.rev)?;
                Ok((None, Some(live)))
            }
        }
    }

    async fn save_draft_doc(
        &self,
        writer: &Writer,
        callflow_id: &str,
        current: Option<Draft>,
        live: Option<StoredCallflow>,
        doc: Map<String, Value>,
    ) -> Result<Draft> {
        let (expected, base_rev) = match (current, live) {
            (Some(d), _) => (Some(d.rev), d.base_rev),
            (None, Some(live)) => (None, Some(live.rev)),
            (None, None) => (None, None),
        };
        let new_callflow = base_rev.is_none();
        self.write_draft(writer, callflow_id, expected, base_rev, new_callflow, doc)
            .await
    }

    async fn write_draft(
        &self,
        writer: &Writer,
        callflow_id: &str,
        expected: Option<String>,
        base_rev: Option<String>,
        new_callflow: bool,
        doc: Map<String, Value>,
    ) -> Result<Draft> {
        let new_rev = cf::next_revision(expected.as_deref(), &doc);
        let write = DraftWrite {
            account_id: writer.account.id.clone(),
            callflow_id: callflow_id.to_string(),
            expected_rev: expected,
            new_rev,
            base_rev,
            doc,
            new_callflow,
            request_id: writer.request_id.clone(),
        };
        let meta = self.meta(writer);
        self.store.write_draft(&write, &meta).await?;
        if !meta.dry_run {
            self.feed.ring();
        }
        Ok(Draft {
            callflow_id: write.callflow_id,
            rev: write.new_rev,
            base_rev: write.base_rev,
            doc: write.doc,
            modified: crate::domain::now_gregorian(),
        })
    }
}
