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
INSERT INTO revisions (account_id, doc_id, number, doc_type, rev, op, doc,
    request_id, auth_account_id, auth_user_id, message, written_at)
SELECT r.account_id, r.callflow_id, CASE WHEN r.rev ~ '^[0-9]{1,18}-' THEN split_part(r.rev, '-', 1)::BIGINT ELSE 0 END,
    'callflow', r.rev, r.op, r.doc, r.request_id,
    r.doc::json ->> 'pvt_auth_account_id', r.doc::json ->> 'pvt_auth_user_id',
    NULL, r.written_at
FROM callflow_revisions r
WHERE EXISTS (SELECT 1 FROM callflows c WHERE c.account_id = r.account_id AND c.id = r.callflow_id)
ON CONFLICT DO NOTHING;
INSERT INTO revisions (account_id, doc_id, number, doc_type, rev, op, doc,
    request_id, auth_account_id, auth_user_id, message, written_at)
SELECT r.account_id, r.doc_id, CASE WHEN r.rev ~ '^[0-9]{1,18}-' THEN split_part(r.rev, '-', 1)::BIGINT ELSE 0 END,
    d.doc_type, r.rev, r.op, r.doc, r.request_id,
    r.doc::json ->> 'pvt_auth_account_id', r.doc::json ->> 'pvt_auth_user_id',
    NULL, r.written_at
FROM document_revisions r
JOIN documents d ON d.account_id = r.account_id AND d.id = r.doc_id
ON CONFLICT DO NOTHING;
-- `callflow_revisions` and `document_revisions` are no longer written but stay: migrations only
-- add, so nodes of the previous version keep working during a rolling upgrade.

-- The change feed's position counter: one row, moved by one inside each write transaction as
-- its last step, so positions are handed out in commit order (the row lock is held until the
-- transaction ends; `changes.seq`, a sequence, is handed out in statement order instead) and
-- a rolled-back write leaves no gap.
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
UPDATE changes SET pos = seq, number = CASE WHEN rev ~ '^[0-9]{1,18}-' THEN split_part(rev, '-', 1)::BIGINT ELSE 0 END;
CREATE UNIQUE INDEX changes_by_pos ON changes (pos);
CREATE INDEX changes_by_account ON changes (account_id, pos);

-- PostgreSQL hands a change its position when the transaction commits: this deferred trigger
-- runs inside COMMIT, takes the next value from the `feed` row and writes it into the change.
-- The row lock is held from there to the end of the commit, so positions follow commit order;
-- and it is taken inside the commit itself, with no client round trip while it is held
-- (PostgreSQL already serialises the commits of transactions that NOTIFY, as every write
-- does). SQLite, with its single writer, takes the position with a plain statement instead.
-- Changes without a revision number (`number` NULL) get no position: the benchmark's writes
-- recorded as before history existed.
CREATE FUNCTION callflowd_feed_position() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_pos BIGINT;
BEGIN
    UPDATE feed SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO next_pos;
    UPDATE changes SET pos = next_pos WHERE seq = NEW.seq;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER changes_feed_position AFTER INSERT ON changes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.pos IS NULL AND NEW.number IS NOT NULL)
    EXECUTE FUNCTION callflowd_feed_position();

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
