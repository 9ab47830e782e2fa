-- History (docs/history.md): one revision table for every document type, the change feed's
-- commit-ordered positions and who wrote each change, and callflow drafts.

-- Every revision of every document (callflows and the other account documents), immutable,
-- written in the document's write transaction. `number` is the revision's generation (the
-- `N` of its `N-hash` rev), counted per document. `auth_account_id` / `auth_user_id` name the
-- token that wrote it; `message` is the optional commit message.
CREATE TABLE revisions (
    account_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    doc_type TEXT NOT NULL,
    rev TEXT NOT NULL,
    op TEXT NOT NULL,
    doc TEXT NOT NULL,
    request_id TEXT,
    auth_account_id TEXT,
    auth_user_id TEXT,
    message TEXT,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, doc_id, number)
);
CREATE INDEX revisions_by_time ON revisions (written_at);

-- The revisions written before, moved over (of documents still stored; a purged document's
-- revisions go with it). Who wrote them is read from the private fields they carry.
INSERT OR IGNORE INTO revisions (account_id, doc_id, number, doc_type, rev, op, doc,
    request_id, auth_account_id, auth_user_id, message, written_at)
SELECT r.account_id, r.callflow_id, CAST(substr(r.rev, 1, instr(r.rev, '-') - 1) AS INTEGER),
    'callflow', r.rev, r.op, r.doc, r.request_id,
    json_extract(r.doc, '$.pvt_auth_account_id'), json_extract(r.doc, '$.pvt_auth_user_id'),
    NULL, r.written_at
FROM callflow_revisions r
WHERE EXISTS (SELECT 1 FROM callflows c WHERE c.account_id = r.account_id AND c.id = r.callflow_id);
INSERT OR IGNORE INTO revisions (account_id, doc_id, number, doc_type, rev, op, doc,
    request_id, auth_account_id, auth_user_id, message, written_at)
SELECT r.account_id, r.doc_id, CAST(substr(r.rev, 1, instr(r.rev, '-') - 1) AS INTEGER),
    d.doc_type, r.rev, r.op, r.doc, r.request_id,
    json_extract(r.doc, '$.pvt_auth_account_id'), json_extract(r.doc, '$.pvt_auth_user_id'),
    NULL, r.written_at
FROM document_revisions r
JOIN documents d ON d.account_id = r.account_id AND d.id = r.doc_id;
-- `callflow_revisions` and `document_revisions` are no longer written but stay: migrations only
-- add, so nodes of the previous version keep working during a rolling upgrade.

-- The change feed's position counter: one row, moved by one inside each write transaction as
-- its last step, so positions are handed out in commit order (the row lock is held until the
-- transaction ends) and a rolled-back write leaves no gap.
CREATE TABLE feed (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO feed (id, seq) VALUES (1, (SELECT COALESCE(MAX(seq), 0) FROM changes));

-- Per change: its feed position (earlier rows keep their old order), the document's revision
-- number, who wrote it, the request and the commit message.
ALTER TABLE changes ADD COLUMN pos BIGINT;
ALTER TABLE changes ADD COLUMN number BIGINT;
ALTER TABLE changes ADD COLUMN auth_account_id TEXT;
ALTER TABLE changes ADD COLUMN auth_user_id TEXT;
ALTER TABLE changes ADD COLUMN request_id TEXT;
ALTER TABLE changes ADD COLUMN message TEXT;
UPDATE changes SET pos = seq,
    number = CAST(substr(rev, 1, instr(rev, '-') - 1) AS INTEGER);
CREATE UNIQUE INDEX changes_by_pos ON changes (pos);
CREATE INDEX changes_by_account ON changes (account_id, pos);

-- One working draft per callflow, beside the live document: validated on save, never routed.
-- `base_rev` is the live revision the draft started from (NULL: a callflow not created yet).
CREATE TABLE drafts (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    callflow_id TEXT NOT NULL,
    rev TEXT NOT NULL,
    base_rev TEXT,
    doc TEXT NOT NULL,
    modified BIGINT NOT NULL,
    PRIMARY KEY (account_id, callflow_id)
);
