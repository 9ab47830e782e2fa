-- Who each live document belongs to: its `owner_id`, and for devices the users hot-desked
-- into it (`hotdesk.users`), written in the document's write transaction. It serves
-- `/users/{ID}/devices` (Kazoo's `devices/listing_by_owner`) and a user's devices when a call
-- rings the user. Documents stored before it are indexed once at start (settings key
-- `owner_index`).
CREATE TABLE document_owners (
    account_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    -- 1 when the owner is only hot-desked into the document.
    hotdesked BIGINT NOT NULL,
    PRIMARY KEY (account_id, doc_id, owner_id)
);
CREATE INDEX document_owners_by_owner ON document_owners (account_id, owner_id, doc_type);
