-- The keys each live document is found under by `/search` (its name row, its number rows),
-- folded to lower case and compared bytewise (collation "C"), written in the document's write
-- transaction: a search reads the documents whose key starts with the searched value instead
-- of the whole account.
-- Existing documents are indexed once by the server at start (settings key `search_index`).
CREATE TABLE search_keys (
    account_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    view TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, doc_id, view, key)
);
CREATE INDEX search_keys_by_key ON search_keys (account_id, doc_type, view, key);
