//! Replies of reads kept in memory while what they were computed from is unchanged.

use serde_json::Map;

use super::error::ApiResult;
use super::extract::AccountScope;
use super::reply::Reply;
use super::AppState;

#[derive(Clone)]
struct ReplyWeight;

impl quick_cache::Weighter<String, (crate::store::ReadStamp, u64, Reply)> for ReplyWeight {
    fn weight(&self, key: &String, (_, _, reply): &(crate::store::ReadStamp, u64, Reply)) -> u64 {
        let data = reply.envelope.data_text.as_ref().map_or(0, |d| d.len());
        (key.len() + data + 256) as u64
    }
}

/// Replies of reads (listings, a document with its metadata, a lookup) by account, name and
/// query string, each stamped with the account's [`crate::store::ReadStamp`] taken before it
/// was computed (and what else it read, such as the routing snapshots' version): a reply is
/// served again only while the stamps are unchanged (no write of the account ended since), so
/// it is exactly what computing it again would give. Stores without stamps (PostgreSQL) are
/// never cached.
pub struct ReplyCache {
    replies: quick_cache::sync::Cache<
        String,
        (crate::store::ReadStamp, u64, Reply),
        ReplyWeight,
        hashbrown::DefaultHashBuilder,
    >,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl ReplyCache {
    pub fn new(budget_bytes: u64) -> Self {
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(4096)
            .weight_capacity(budget_bytes.max(1))
            .build()
            .expect("static cache options are valid");
        Self {
            replies: quick_cache::sync::Cache::with_options(
                options,
                ReplyWeight,
                Default::default(),
                Default::default(),
            ),
            hits: metrics::counter!("callflowd_reply_cache_reads_total", "result" => "hit"),
            misses: metrics::counter!("callflowd_reply_cache_reads_total", "result" => "miss"),
        }
    }

    /// The read `name` of the scope's account: from memory when an equal computation is kept,
    /// else computed by `compute` (and kept when it succeeds). `also` stamps what the answer
    /// reads besides the account's documents (0 when nothing).
    pub async fn reply<F>(
        &self,
        state: &AppState,
        scope: &AccountScope,
        name: &str,
        also: u64,
        compute: F,
    ) -> ApiResult<Reply>
    where
        F: std::future::Future<Output = ApiResult<Reply>>,
    {
        let ctx = &scope.ctx;
        let account_id = &scope.account.id;
        // A GET's envelope options could change the answer too: such requests are computed.
        let plain = ctx.envelope.is_empty() && ctx.data.as_object().is_none_or(Map::is_empty);
        let stamp = match state.store.read_stamp(account_id) {
            Some(s) if plain => s,
            _ => return compute.await,
        };
        let mut key = String::with_capacity(96);
        key.push_str(account_id);
        key.push('\0');
        key.push_str(name);
        for ((k, v), bare) in ctx.query_pairs.iter().zip(&ctx.query_bare) {
            if k == "auth_token" {
                continue;
            }
            key.push('\0');
            key.push_str(k);
            if !bare {
                key.push('=');
                key.push_str(v);
            }
        }
        if let Some((kept, kept_also, reply)) = self.replies.get(&key) {
            if kept == stamp && kept_also == also {
                self.hits.increment(1);
                return Ok(reply);
            }
        }
        self.misses.increment(1);
        let reply = compute.await?;
        self.replies.insert(key, (stamp, also, reply.clone()));
        Ok(reply)
    }
}
