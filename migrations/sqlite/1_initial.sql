-- Accounts. `tree` is a JSON array of ancestor ids (root first); `superduper` accounts may
-- touch every account. `name_key` is the name lower-cased with only [a-z0-9] kept, which is
-- how Kazoo matches `account_name` at login.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    realm TEXT UNIQUE,
    parent_id TEXT REFERENCES accounts(id),
    tree TEXT NOT NULL,
    superduper BIGINT NOT NULL DEFAULT 0,
    api_key_prefix TEXT,
    api_key_hash TEXT,
    doc TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX accounts_name_key ON accounts (name_key);
CREATE INDEX accounts_api_key_prefix ON accounts (api_key_prefix);

-- Users. md5_hash/sha1_hash are argon2 hashes of the credential strings Kazoo clients send
-- (md5 or sha1 of "username:password"); nothing reversible is kept.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    username TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    enabled BIGINT NOT NULL,
    md5_hash TEXT NOT NULL,
    sha1_hash TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (account_id, username)
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The current document of each callflow (private fields included, as JSON text).
CREATE TABLE callflows (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    id TEXT NOT NULL,
    rev TEXT NOT NULL,
    name TEXT,
    deleted BIGINT NOT NULL DEFAULT 0,
    doc TEXT NOT NULL,
    modified BIGINT NOT NULL,
    PRIMARY KEY (account_id, id)
);

-- Routing index. The primary keys are the uniqueness rule: a number or a pattern belongs to
-- at most one live callflow per account, enforced inside the write transaction.
CREATE TABLE callflow_numbers (
    account_id TEXT NOT NULL,
    number TEXT NOT NULL,
    callflow_id TEXT NOT NULL,
    search_key TEXT NOT NULL,
    PRIMARY KEY (account_id, number)
);
CREATE INDEX callflow_numbers_callflow ON callflow_numbers (account_id, callflow_id);
CREATE INDEX callflow_numbers_search ON callflow_numbers (account_id, search_key);

CREATE TABLE callflow_patterns (
    account_id TEXT NOT NULL,
    pattern TEXT NOT NULL,
    callflow_id TEXT NOT NULL,
    PRIMARY KEY (account_id, pattern)
);
CREATE INDEX callflow_patterns_callflow ON callflow_patterns (account_id, callflow_id);

-- Every revision written, immutable.
CREATE TABLE callflow_revisions (
    account_id TEXT NOT NULL,
    callflow_id TEXT NOT NULL,
    rev TEXT NOT NULL,
    op TEXT NOT NULL,
    doc TEXT NOT NULL,
    request_id TEXT,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, callflow_id, rev)
);

-- Ordered change feed: one row per committed write.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    callflow_id TEXT NOT NULL,
    rev TEXT NOT NULL,
    op TEXT NOT NULL,
    written_at BIGINT NOT NULL
);
