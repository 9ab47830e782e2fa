-- The account documents callflows point at (devices, voicemail boxes, groups, menus, temporal
-- rules and sets, lists, media, faxboxes, local resources), one row per document. Ids share
-- one space per account with callflows and users, as one CouchDB database per account does.
CREATE TABLE documents (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    id TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    rev TEXT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    doc TEXT NOT NULL,
    modified BIGINT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX documents_by_type ON documents (account_id, doc_type, deleted, id);

-- Values a document type keeps unique per account (a device's SIP username, a voicemail box's
-- mailbox number, ...): the primary key is the rule, checked inside the write transaction.
CREATE TABLE document_keys (
    account_id TEXT NOT NULL,
    key_kind TEXT NOT NULL,
    value TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    PRIMARY KEY (account_id, key_kind, value)
);
CREATE INDEX document_keys_by_doc ON document_keys (account_id, doc_id);

-- Every revision of every document, immutable.
CREATE TABLE document_revisions (
    account_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    rev TEXT NOT NULL,
    op TEXT NOT NULL,
    doc TEXT NOT NULL,
    request_id TEXT,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, doc_id, rev)
);
