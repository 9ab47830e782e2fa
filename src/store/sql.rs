//! The SQL both backends share. The statements use `$n` placeholders, which SQLite and
//! PostgreSQL both accept, so one macro stamps out the [`super::Store`] impl for each; the
//! backend supplies its pools and how it opens a write transaction.

use serde_json::{Map, Value};

use super::{Account, StoreError, User};

pub(super) fn parse_doc(text: &str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("corrupt stored document: {e}")))
}

pub(super) fn doc_text(doc: &Map<String, Value>) -> String {
    // Serialising a JSON map cannot fail.
    serde_json::to_string(doc).unwrap_or_else(|_| "{}".to_string())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn account_from_parts(
    id: String,
    name: String,
    realm: Option<String>,
    parent_id: Option<String>,
    tree: String,
    superduper: i64,
    doc: String,
    created: i64,
) -> Result<Account, StoreError> {
    Ok(Account {
        id,
        name,
        realm,
        parent_id,
        tree: serde_json::from_str(&tree)
            .map_err(|e| StoreError::Other(anyhow::anyhow!("corrupt account tree: {e}")))?,
        superduper: superduper != 0,
        doc: parse_doc(&doc)?,
        created,
    })
}

/// Pool hook (before a connection is handed out and after it is given back): a connection
/// that still counts an open transaction is discarded and replaced. That happens when a future
/// was dropped half-way through a transaction, or when the database rolled a transaction back
/// by itself (SQLite does on a full disk) so the driver's count and the database disagree;
/// reusing such a connection would fail every later `BEGIN`. (A connection whose dropped
/// transaction's rollback is still queued is discarded too: rare now that writes run to their
/// end in tasks of their own, and cheaper than a round trip on every release.)
pub(super) fn discard_if_in_transaction<C: sqlx::Connection>(
    conn: &mut C,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if conn.is_in_transaction() {
            tracing::warn!("discarding a database connection left inside a transaction");
            return Ok(false);
        }
        Ok(true)
    })
}

/// How long `/healthz` waits for the store before calling it unreachable.
pub(super) const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Rows per multi-row statement (4 parameters each stays far below both backends' limits).
pub(super) const CHUNK: usize = 500;

pub(super) const ACCOUNT_COLUMNS: &str =
    "id, name, realm, parent_id, tree, superduper, doc, created";
pub(super) const USER_COLUMNS: &str =
    "id, account_id, username, first_name, last_name, enabled, md5_hash, sha1_hash";

pub(super) fn user_from_parts(
    (id, account_id, username, first_name, last_name, enabled, md5_hash, sha1_hash): (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        String,
        String,
    ),
) -> User {
    User {
        id,
        account_id,
        username,
        first_name,
        last_name,
        enabled: enabled != 0,
        md5_hash,
        sha1_hash,
    }
}

/// Implements [`super::Store`] for a backend struct with `read` and `write` pools of `$db`.
/// `json_agg` is the backend's aggregate building a JSON array text of a column (`{}` stands for
/// the column); `$begin` is an expression turning `&self.write` into a write transaction.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty, json_agg: $json_agg:literal, |$pool:ident| $begin:expr) => {
        type AccountRow = (String, String, Option<String>, Option<String>, String, i64, String, i64);
        type UserRow = (String, String, String, Option<String>, Option<String>, i64, String, String);

        fn account_row(r: AccountRow) -> Result<$crate::store::Account, $crate::store::StoreError> {
            $crate::store::sql::account_from_parts(r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7)
        }

        fn callflow_row(
            (id, rev, deleted, doc): (String, String, i64, String),
        ) -> Result<$crate::store::StoredCallflow, $crate::store::StoreError> {
            Ok($crate::store::StoredCallflow {
                id,
                rev,
                deleted: deleted != 0,
                doc: $crate::store::sql::parse_doc(&doc)?,
            })
        }

        impl $store {
            async fn begin_write(&self) -> Result<sqlx::Transaction<'static, $db>, sqlx::Error> {
                let $pool = &self.write;
                $begin
            }

            async fn conflicts(
                conn: &mut <$db as sqlx::Database>::Connection,
                write: &$crate::store::CallflowWrite,
            ) -> Result<Vec<$crate::store::UniqueConflict>, $crate::store::StoreError> {
                use $crate::store::{KeyKind, UniqueConflict};
                let mut found = Vec::new();
                if write.deleted {
                    return Ok(found);
                }
                let lists = [
                    (KeyKind::Number, &write.numbers, "callflow_numbers", "number"),
                    (KeyKind::Pattern, &write.patterns, "callflow_patterns", "pattern"),
                ];
                for (kind, values, table, column) in lists {
                    for chunk in values.chunks($crate::store::sql::CHUNK) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                            "SELECT n.{column}, n.callflow_id, c.name FROM {table} n JOIN callflows c ON c.account_id = n.account_id AND c.id = n.callflow_id WHERE n.account_id = "
                        ));
                        qb.push_bind(&write.account_id);
                        qb.push(" AND n.callflow_id <> ");
                        qb.push_bind(&write.id);
                        qb.push(format!(" AND n.{column} IN ("));
                        let mut list = qb.separated(", ");
                        for value in chunk {
                            list.push_bind(value);
                        }
                        list.push_unseparated(format!(") ORDER BY n.{column}, n.callflow_id"));
                        let rows: Vec<(String, String, Option<String>)> = qb.build_query_as().fetch_all(&mut *conn).await?;
                        for (value, callflow_id, name) in rows {
                            found.push(UniqueConflict {
                                kind,
                                value,
                                name: name.filter(|n| !n.is_empty()).unwrap_or_else(|| callflow_id.clone()),
                                callflow_id,
                            });
                        }
                    }
                }
                Ok(found)
            }

            async fn try_write(&self, write: &$crate::store::CallflowWrite) -> Result<i64, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.begin_write().await?;
                let current: Option<(String,)> =
                    sqlx::query_as("SELECT rev FROM callflows WHERE account_id = $1 AND id = $2")
                        .bind(&write.account_id)
                        .bind(&write.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                match (&write.expected_rev, current) {
                    (None, Some(_)) => return Err(StoreError::Conflict),
                    (Some(_), None) => return Err(StoreError::NotFound),
                    (Some(expected), Some((rev,))) if *expected != rev => return Err(StoreError::Conflict),
                    _ => {}
                }
                let conflicts = Self::conflicts(&mut *tx, write).await?;
                if !conflicts.is_empty() {
                    return Err(StoreError::Unique(conflicts));
                }
                if let Some(limit) = write.max_account_patterns.filter(|_| !write.deleted && !write.patterns.is_empty()) {
                    self.lock_account_patterns(&mut tx, &write.account_id).await?;
                    let (others, own): (i64, i64) = sqlx::query_as(
                        "SELECT COUNT(*) FILTER (WHERE callflow_id <> $2), COUNT(*) FILTER (WHERE callflow_id = $2) FROM callflow_patterns WHERE account_id = $1",
                    )
                    .bind(&write.account_id)
                    .bind(&write.id)
                    .fetch_one(&mut *tx)
                    .await?;
                    // Only a write that adds patterns can be refused: an account already over
                    // the cap (imported data) can still save, and shrink.
                    let (others, own) = (others as usize, own as usize);
                    if write.patterns.len() > own && others + write.patterns.len() > limit {
                        return Err(StoreError::TooManyPatterns { limit });
                    }
                }
                let now = $crate::domain::now_gregorian();
                let text = $crate::store::sql::doc_text(&write.doc);
                let name = write.doc.get("name").and_then(|v| v.as_str());
                sqlx::query(
                    "INSERT INTO callflows (account_id, id, rev, name, deleted, doc, modified) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (account_id, id) DO UPDATE SET rev = excluded.rev, name = excluded.name, deleted = excluded.deleted, doc = excluded.doc, modified = excluded.modified",
                )
                .bind(&write.account_id)
                .bind(&write.id)
                .bind(&write.new_rev)
                .bind(name)
                .bind(i64::from(write.deleted))
                .bind(&text)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                for table in ["callflow_numbers", "callflow_patterns"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1 AND callflow_id = $2"))
                        .bind(&write.account_id)
                        .bind(&write.id)
                        .execute(&mut *tx)
                        .await?;
                }
                if !write.deleted {
                    for chunk in write.numbers.chunks($crate::store::sql::CHUNK) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO callflow_numbers (account_id, number, callflow_id, search_key) ");
                        qb.push_values(chunk, |mut row, number| {
                            row.push_bind(&write.account_id)
                                .push_bind(number)
                                .push_bind(&write.id)
                                .push_bind($crate::domain::numbers::search_key(number));
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                    for chunk in write.patterns.chunks($crate::store::sql::CHUNK) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO callflow_patterns (account_id, pattern, callflow_id) ");
                        qb.push_values(chunk, |mut row, pattern| {
                            row.push_bind(&write.account_id).push_bind(pattern).push_bind(&write.id);
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                }
                sqlx::query(
                    "INSERT INTO callflow_revisions (account_id, callflow_id, rev, op, doc, request_id, written_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&write.account_id)
                .bind(&write.id)
                .bind(&write.new_rev)
                .bind(write.op.as_str())
                .bind(&text)
                .bind(&write.request_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let (seq,): (i64,) = sqlx::query_as("INSERT INTO changes (account_id, callflow_id, rev, op, written_at) VALUES ($1, $2, $3, $4, $5) RETURNING seq")
                    .bind(&write.account_id)
                    .bind(&write.id)
                    .bind(&write.new_rev)
                    .bind(write.op.as_str())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                self.announce(&mut tx, &write.account_id, &write.id, seq).await?;
                tx.commit().await?;
                Ok(seq)
            }

            async fn health_now(&self) -> Result<(), $crate::store::StoreError> {
                // The schema is there and the read side answers...
                sqlx::query("SELECT 1 FROM accounts LIMIT 1").execute(&self.read).await?;
                // ...and a write transaction can be opened (SQLite takes the write lock).
                let mut tx = self.begin_write().await?;
                sqlx::query("SELECT 1 FROM changes LIMIT 1").execute(&mut *tx).await?;
                self.check_writable(&mut tx).await?;
                tx.rollback().await?;
                Ok(())
            }

            async fn create_account_now(
                &self,
                account: &$crate::store::Account,
                api_key: Option<(&str, &str)>,
                admin: Option<&$crate::store::User>,
            ) -> $crate::store::StoreResult<$crate::store::Account> {
                let mut tx = self.begin_write().await?;
                self.lock_accounts(&mut tx).await?;
                // Kazoo's `validate_realm_is_unique` and `validate_account_name_is_unique`:
                // realms compared lower-cased, names by their normalised key.
                let mut taken = Vec::new();
                if let Some(realm) = &account.realm {
                    let hit: Option<(String,)> = sqlx::query_as("SELECT id FROM accounts WHERE lower(realm) = lower($1) LIMIT 1")
                        .bind(realm)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if hit.is_some() {
                        taken.push(("realm", realm.clone()));
                    }
                }
                let hit: Option<(String,)> = sqlx::query_as("SELECT id FROM accounts WHERE name_key = $1 LIMIT 1")
                    .bind($crate::domain::numbers::search_key(&account.name))
                    .fetch_optional(&mut *tx)
                    .await?;
                if hit.is_some() {
                    taken.push(("name", account.name.clone()));
                }
                if !taken.is_empty() {
                    return Err($crate::store::StoreError::Taken(taken));
                }
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM accounts").fetch_one(&mut *tx).await?;
                let mut created = account.clone();
                created.superduper = account.superduper || count == 0;
                let tree = serde_json::to_string(&created.tree).unwrap_or_else(|_| "[]".into());
                let result = sqlx::query(
                    "INSERT INTO accounts (id, name, name_key, realm, parent_id, tree, superduper, api_key_prefix, api_key_hash, doc, created) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&created.id)
                .bind(&created.name)
                .bind($crate::domain::numbers::search_key(&created.name))
                .bind(&created.realm)
                .bind(&created.parent_id)
                .bind(tree)
                .bind(i64::from(created.superduper))
                .bind(api_key.map(|k| k.0))
                .bind(api_key.map(|k| k.1))
                .bind($crate::store::sql::doc_text(&created.doc))
                .bind(created.created)
                .execute(&mut *tx)
                .await;
                if let Err(sqlx::Error::Database(db)) = &result {
                    if db.is_unique_violation() {
                        return Err($crate::store::StoreError::Conflict);
                    }
                }
                result?;
                if let Some(user) = admin {
                    sqlx::query(
                        "INSERT INTO users (id, account_id, username, first_name, last_name, enabled, md5_hash, sha1_hash, doc) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(&user.id)
                    .bind(&created.id)
                    .bind(&user.username)
                    .bind(&user.first_name)
                    .bind(&user.last_name)
                    .bind(i64::from(user.enabled))
                    .bind(&user.md5_hash)
                    .bind(&user.sha1_hash)
                    .bind("{}")
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(created)
            }

            async fn setting_or_init_now(&self, key: &str, value: &str) -> $crate::store::StoreResult<String> {
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                let (stored,): (String,) =
                    sqlx::query_as("SELECT value FROM settings WHERE key = $1").bind(key).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok(stored)
            }

            async fn write_callflow_now(&self, write: &$crate::store::CallflowWrite) -> $crate::store::StoreResult<i64> {
                match self.try_write(write).await {
                    // A concurrent writer committed the same key between our check and our
                    // insert: report who holds it now, as the pre-check would have.
                    Err($crate::store::StoreError::Other(e)) if is_unique_violation(&e) => {
                        let mut conn = self.read.acquire().await?;
                        let conflicts = Self::conflicts(&mut *conn, write).await?;
                        if conflicts.is_empty() {
                            Err($crate::store::StoreError::Conflict)
                        } else {
                            Err($crate::store::StoreError::Unique(conflicts))
                        }
                    }
                    other => other,
                }
            }

            async fn purge_callflow_now(&self, account_id: &str, id: &str, expected_rev: &str) -> $crate::store::StoreResult<i64> {
                let mut tx = self.begin_write().await?;
                let current: Option<(String,)> = sqlx::query_as("SELECT rev FROM callflows WHERE account_id = $1 AND id = $2")
                    .bind(account_id)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                match current {
                    None => return Err($crate::store::StoreError::NotFound),
                    Some((rev,)) if rev != expected_rev => return Err($crate::store::StoreError::Conflict),
                    _ => {}
                }
                for table in ["callflow_numbers", "callflow_patterns"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1 AND callflow_id = $2"))
                        .bind(account_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("DELETE FROM callflows WHERE account_id = $1 AND id = $2")
                    .bind(account_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let (seq,): (i64,) = sqlx::query_as("INSERT INTO changes (account_id, callflow_id, rev, op, written_at) VALUES ($1, $2, $3, 'purge', $4) RETURNING seq")
                    .bind(account_id)
                    .bind(id)
                    .bind(expected_rev)
                    .bind($crate::domain::now_gregorian())
                    .fetch_one(&mut *tx)
                    .await?;
                self.announce(&mut tx, account_id, id, seq).await?;
                tx.commit().await?;
                Ok(seq)
            }

            async fn fetch_callflows_where(
                &self,
                clause: &str,
                account_id: &str,
                arg: &str,
            ) -> Result<Vec<$crate::store::StoredCallflow>, $crate::store::StoreError> {
                let query = format!(
                    "SELECT c.id, c.rev, c.deleted, c.doc FROM callflows c WHERE c.account_id = $1 AND c.deleted = 0 AND c.id IN ({clause}) ORDER BY c.id"
                );
                let rows: Vec<(String, String, i64, String)> =
                    sqlx::query_as(&query).bind(account_id).bind(arg).fetch_all(&self.read).await?;
                rows.into_iter().map(callflow_row).collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.read).await?;
                Ok(())
            }

            async fn health(&self) -> $crate::store::StoreResult<()> {
                let this = self.clone();
                let probe = $crate::store::detached(async move { this.health_now().await });
                match tokio::time::timeout($crate::store::sql::HEALTH_TIMEOUT, probe).await {
                    Ok(result) => result,
                    Err(_) => Err($crate::store::StoreError::Unavailable(anyhow::anyhow!(
                        "no write transaction could be opened within {:?}",
                        $crate::store::sql::HEALTH_TIMEOUT
                    ))),
                }
            }

            async fn close(&self) {
                self.read.close().await;
                self.write.close().await;
            }

            async fn create_account(
                &self,
                account: &$crate::store::Account,
                api_key: Option<(&str, &str)>,
                admin: Option<&$crate::store::User>,
            ) -> $crate::store::StoreResult<$crate::store::Account> {
                let (this, account, admin) = (self.clone(), account.clone(), admin.cloned());
                let api_key = api_key.map(|(a, b)| (a.to_string(), b.to_string()));
                $crate::store::detached(async move {
                    let key = api_key.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
                    this.create_account_now(&account, key, admin.as_ref()).await
                })
                .await
            }

            async fn account_count(&self) -> $crate::store::StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM accounts").fetch_one(&self.read).await?;
                Ok(n)
            }

            async fn get_account(&self, id: &str) -> $crate::store::StoreResult<Option<$crate::store::Account>> {
                let q = format!("SELECT {} FROM accounts WHERE id = $1", $crate::store::sql::ACCOUNT_COLUMNS);
                let row: Option<AccountRow> = sqlx::query_as(&q).bind(id).fetch_optional(&self.read).await?;
                row.map(account_row).transpose()
            }

            async fn accounts_by_realm(&self, realm: &str) -> $crate::store::StoreResult<Vec<$crate::store::Account>> {
                let q = format!("SELECT {} FROM accounts WHERE lower(realm) = lower($1)", $crate::store::sql::ACCOUNT_COLUMNS);
                let rows: Vec<AccountRow> = sqlx::query_as(&q).bind(realm).fetch_all(&self.read).await?;
                rows.into_iter().map(account_row).collect()
            }

            async fn accounts_by_name_key(&self, name_key: &str) -> $crate::store::StoreResult<Vec<$crate::store::Account>> {
                let q = format!("SELECT {} FROM accounts WHERE name_key = $1 ORDER BY id", $crate::store::sql::ACCOUNT_COLUMNS);
                let rows: Vec<AccountRow> = sqlx::query_as(&q).bind(name_key).fetch_all(&self.read).await?;
                rows.into_iter().map(account_row).collect()
            }

            async fn api_key_candidates(&self, prefix: &str) -> $crate::store::StoreResult<Vec<($crate::store::Account, String)>> {
                let q = format!(
                    "SELECT {}, api_key_hash FROM accounts WHERE api_key_prefix = $1 AND api_key_hash IS NOT NULL",
                    $crate::store::sql::ACCOUNT_COLUMNS
                );
                let rows: Vec<(String, String, Option<String>, Option<String>, String, i64, String, i64, String)> =
                    sqlx::query_as(&q).bind(prefix).fetch_all(&self.read).await?;
                rows.into_iter()
                    .map(|r| Ok((account_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7))?, r.8)))
                    .collect()
            }

            async fn login_users(&self, account_id: &str) -> $crate::store::StoreResult<Vec<$crate::store::User>> {
                let q = format!("SELECT {} FROM users WHERE account_id = $1 AND enabled = 1 ORDER BY id", $crate::store::sql::USER_COLUMNS);
                let rows: Vec<UserRow> = sqlx::query_as(&q).bind(account_id).fetch_all(&self.read).await?;
                Ok(rows.into_iter().map($crate::store::sql::user_from_parts).collect())
            }

            async fn get_user(&self, account_id: &str, id: &str) -> $crate::store::StoreResult<Option<$crate::store::User>> {
                let q = format!("SELECT {} FROM users WHERE account_id = $1 AND id = $2", $crate::store::sql::USER_COLUMNS);
                let row: Option<UserRow> = sqlx::query_as(&q).bind(account_id).bind(id).fetch_optional(&self.read).await?;
                Ok(row.map($crate::store::sql::user_from_parts))
            }

            async fn setting_or_init(&self, key: &str, value: &str) -> $crate::store::StoreResult<String> {
                let (this, key, value) = (self.clone(), key.to_string(), value.to_string());
                $crate::store::detached(async move { this.setting_or_init_now(&key, &value).await }).await
            }

            async fn get_callflow(&self, account_id: &str, id: &str) -> $crate::store::StoreResult<Option<$crate::store::StoredCallflow>> {
                let row: Option<(String, String, i64, String)> =
                    sqlx::query_as("SELECT id, rev, deleted, doc FROM callflows WHERE account_id = $1 AND id = $2")
                        .bind(account_id)
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?;
                row.map(callflow_row).transpose()
            }

            async fn list_callflows(
                &self,
                account_id: &str,
                start: Option<&str>,
                limit: i64,
                descending: bool,
            ) -> $crate::store::StoreResult<Vec<$crate::store::StoredCallflow>> {
                let (cmp, order) = if descending { ("<=", "DESC") } else { (">=", "ASC") };
                let q = match start {
                    Some(_) => format!("SELECT id, rev, deleted, doc FROM callflows WHERE account_id = $1 AND deleted = 0 AND id {cmp} $3 ORDER BY id {order} LIMIT $2"),
                    None => format!("SELECT id, rev, deleted, doc FROM callflows WHERE account_id = $1 AND deleted = 0 ORDER BY id {order} LIMIT $2"),
                };
                let mut query = sqlx::query_as::<_, (String, String, i64, String)>(&q).bind(account_id).bind(limit);
                if let Some(start) = start {
                    query = query.bind(start);
                }
                let rows = query.fetch_all(&self.read).await?;
                rows.into_iter().map(callflow_row).collect()
            }

            async fn write_callflow(&self, write: &$crate::store::CallflowWrite) -> $crate::store::StoreResult<i64> {
                let (this, write) = (self.clone(), write.clone());
                $crate::store::detached(async move { this.write_callflow_now(&write).await }).await
            }

            async fn purge_callflow(&self, account_id: &str, id: &str, expected_rev: &str) -> $crate::store::StoreResult<i64> {
                let this = self.clone();
                let (account_id, id, expected_rev) = (account_id.to_string(), id.to_string(), expected_rev.to_string());
                $crate::store::detached(async move { this.purge_callflow_now(&account_id, &id, &expected_rev).await }).await
            }

            async fn callflows_with_number(&self, account_id: &str, number: &str) -> $crate::store::StoreResult<Vec<$crate::store::StoredCallflow>> {
                self.fetch_callflows_where(
                    "SELECT callflow_id FROM callflow_numbers WHERE account_id = $1 AND number = $2",
                    account_id,
                    number,
                )
                .await
            }

            async fn search_numbers(&self, account_id: &str, key_prefix: &str) -> $crate::store::StoreResult<Vec<$crate::store::StoredCallflow>> {
                // The key holds only [a-z0-9], so LIKE needs no escaping.
                let prefix: String = key_prefix.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                self.fetch_callflows_where(
                    "SELECT callflow_id FROM callflow_numbers WHERE account_id = $1 AND search_key LIKE $2 || '%'",
                    account_id,
                    &prefix,
                )
                .await
            }

            fn subscribe_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<$crate::store::ChangeEvent>> {
                self.change_events()
            }

            async fn route_keys(&self, account_id: &str) -> $crate::store::StoreResult<Vec<$crate::store::RouteKey>> {
                // One row per callflow with its keys as a JSON array: a million-number account
                // loads in a thousand rows instead of a million.
                let mut keys = Vec::new();
                for (kind, table, column) in [
                    ($crate::store::KeyKind::Number, "callflow_numbers", "number"),
                    ($crate::store::KeyKind::Pattern, "callflow_patterns", "pattern"),
                ] {
                    let query = format!(
                        "SELECT callflow_id, {} FROM {table} WHERE account_id = $1 GROUP BY callflow_id",
                        $json_agg.replace("{}", column)
                    );
                    let rows: Vec<(String, String)> = sqlx::query_as(&query).bind(account_id).fetch_all(&self.read).await?;
                    for (callflow_id, values) in rows {
                        let values: Vec<String> = serde_json::from_str(&values)
                            .map_err(|e| $crate::store::StoreError::Other(anyhow::anyhow!("routing keys of {callflow_id}: {e}")))?;
                        keys.extend(values.into_iter().map(|value| $crate::store::RouteKey {
                            kind,
                            value,
                            callflow_id: callflow_id.clone(),
                        }));
                    }
                }
                Ok(keys)
            }

            async fn callflow_route_keys(&self, account_id: &str, callflow_id: &str) -> $crate::store::StoreResult<(Vec<String>, Vec<String>)> {
                let numbers: Vec<(String,)> = sqlx::query_as("SELECT number FROM callflow_numbers WHERE account_id = $1 AND callflow_id = $2")
                    .bind(account_id)
                    .bind(callflow_id)
                    .fetch_all(&self.read)
                    .await?;
                let patterns: Vec<(String,)> = sqlx::query_as("SELECT pattern FROM callflow_patterns WHERE account_id = $1 AND callflow_id = $2")
                    .bind(account_id)
                    .bind(callflow_id)
                    .fetch_all(&self.read)
                    .await?;
                Ok((numbers.into_iter().map(|r| r.0).collect(), patterns.into_iter().map(|r| r.0).collect()))
            }
        }

        fn is_unique_violation(e: &anyhow::Error) -> bool {
            e.downcast_ref::<sqlx::Error>()
                .and_then(|e| e.as_database_error())
                .map(|d| d.is_unique_violation())
                .unwrap_or(false)
        }
    };
}

pub(super) use impl_sql_store;
