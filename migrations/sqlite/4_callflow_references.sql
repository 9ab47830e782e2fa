-- The documents each callflow's flow and metaflows name (`data.id`, endpoint ids, temporal
-- rule ids, ...), written in the callflow's write transaction: `?references=ID` lists the
-- callflows that name a document.
CREATE TABLE callflow_references (
    account_id TEXT NOT NULL,
    callflow_id TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    PRIMARY KEY (account_id, callflow_id, ref_id)
);
CREATE INDEX callflow_references_by_ref ON callflow_references (account_id, ref_id);
