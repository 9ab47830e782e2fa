//! Listing mechanics shared by collection endpoints: Kazoo's paging options, opaque start
//! keys, and the query-string filters (evaluated on the full stored document).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use crate::store::StoredCallflow;

use super::envelope::ReqCtx;
use super::error::{ApiError, ApiResult};
use super::AppState;

/// Default page size (Kazoo's `crossbar.pagination_page_size`).
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Rows read per round trip while filters are active.
const FILTER_BATCH: i64 = 200;

#[derive(Debug, Clone)]
pub struct Page {
    pub paginate: bool,
    pub page_size: i64,
    pub start: Option<String>,
    /// The start key exactly as the client sent it (echoed back).
    pub raw_start_key: Option<String>,
    pub descending: bool,
}

impl Page {
    pub fn from_request(ctx: &ReqCtx) -> ApiResult<Self> {
        let paginate = ctx.flag("paginate") != Some(false);
        let page_size = match ctx.option("page_size") {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => {
                let n = match &v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                }
                .ok_or_else(|| ApiError::faulty_request("invalid page size"))?;
                if n < 1 {
                    return Err(ApiError::faulty_request("page size must be at least 1"));
                }
                n
            }
        };
        let raw_start_key = ctx.option("start_key").and_then(|v| match v {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => Some(other.to_string()),
        });
        // Only the query string sets the direction (Kazoo ignores data and envelope here).
        let is =
            |k: &str, want: &str| ctx.query(k).map(|v| v.eq_ignore_ascii_case(want)) == Some(true);
        let descending = is("descending", "true") || is("ascending", "false");
        Ok(Self {
            paginate,
            page_size,
            start: raw_start_key.as_deref().map(decode_key),
            raw_start_key,
            descending,
        })
    }
}

/// Kazoo's start keys: base64url (no padding) of the Erlang external term of the key, which
/// for a binary id is `131, 109, <u32 length>, bytes`. Reproduced so cached keys stay valid.
pub fn encode_key(id: &str) -> String {
    let mut term = Vec::with_capacity(id.len() + 6);
    term.extend_from_slice(&[131, 109]);
    term.extend_from_slice(&(id.len() as u32).to_be_bytes());
    term.extend_from_slice(id.as_bytes());
    URL_SAFE_NO_PAD.encode(term)
}

/// Decodes a start key; anything that is not an encoded binary term is used as the raw key.
pub fn decode_key(raw: &str) -> String {
    URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .ok()
        .filter(|b| b.len() >= 6 && b[0] == 131 && b[1] == 109)
        .and_then(|b| {
            let len = u32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize;
            (b.len() == 6 + len)
                .then(|| String::from_utf8(b[6..].to_vec()).ok())
                .flatten()
        })
        // A key that decodes to U+0000 could not be stored anyway: use the raw text.
        .filter(|k| !k.contains('\0'))
        .unwrap_or_else(|| raw.to_string())
}

#[derive(Debug, Clone)]
enum Filter {
    Equals(Vec<String>, String),
    NotEquals(Vec<String>, String),
    HasKey(Vec<String>),
    KeyMissing(Vec<String>),
    HasValue(Vec<String>),
    ValueMissing(Vec<String>),
    CreatedFrom(i64),
    CreatedTo(i64),
    ModifiedFrom(i64),
    ModifiedTo(i64),
}

/// The ANDed query-string filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Filter>);

impl Filters {
    pub fn from_query(pairs: &[(String, String)]) -> Self {
        let path = |k: &str| k.split('.').map(str::to_string).collect::<Vec<_>>();
        let int = |v: &str| v.trim().parse::<i64>().ok();
        let mut out = Vec::new();
        for (k, v) in pairs {
            let f = if let Some(key) = k.strip_prefix("filter_not_") {
                Some(Filter::NotEquals(path(key), v.clone()))
            } else if let Some(key) = k.strip_prefix("filter_") {
                Some(Filter::Equals(path(key), v.clone()))
            } else {
                match k.as_str() {
                    "has_key" => Some(Filter::HasKey(path(v))),
                    "key_missing" => Some(Filter::KeyMissing(path(v))),
                    "has_value" => Some(Filter::HasValue(path(v))),
                    "value_missing" => Some(Filter::ValueMissing(path(v))),
                    "created_from" => int(v).map(Filter::CreatedFrom),
                    "created_to" => int(v).map(Filter::CreatedTo),
                    "modified_from" => int(v).map(Filter::ModifiedFrom),
                    "modified_to" => int(v).map(Filter::ModifiedTo),
                    _ => None,
                }
            };
            out.extend(f);
        }
        Self(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keep(&self, doc: &serde_json::Map<String, Value>) -> bool {
        self.0.iter().all(|f| keep_one(f, doc))
    }
}

fn lookup<'a>(doc: &'a serde_json::Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut cur = doc.get(first)?;
    for seg in rest {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Kazoo's stringification for `filter_`: arrays concatenate their elements.
fn stringify(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items.iter().map(|i| stringify(Some(i))).collect(),
        Some(other) => other.to_string(),
    }
}

fn equals(doc_value: Option<&Value>, wanted: &str) -> bool {
    let s = stringify(doc_value);
    if s == wanted {
        return true;
    }
    match serde_json::from_str::<Value>(wanted) {
        Ok(Value::Array(items)) => items.iter().any(|i| stringify(Some(i)) == s),
        Ok(Value::String(w)) => w == s,
        Ok(other) => s.parse::<Value>().map(|v| v == other).unwrap_or(false),
        Err(_) => false,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty() || s == "0" || s == "undefined" || s == "NULL",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(_) => false,
    }
}

fn keep_one(f: &Filter, doc: &serde_json::Map<String, Value>) -> bool {
    let num = |k: &str| doc.get(k).and_then(Value::as_i64);
    match f {
        Filter::Equals(p, v) => equals(lookup(doc, p), v),
        Filter::NotEquals(p, v) => !equals(lookup(doc, p), v),
        Filter::HasKey(p) => lookup(doc, p).is_some(),
        Filter::KeyMissing(p) => lookup(doc, p).is_none(),
        Filter::HasValue(p) => lookup(doc, p).map(|v| !is_empty_value(v)).unwrap_or(false),
        Filter::ValueMissing(p) => lookup(doc, p).map(is_empty_value).unwrap_or(true),
        Filter::CreatedFrom(g) => num("pvt_created").map(|c| c >= *g).unwrap_or(false),
        Filter::CreatedTo(g) => num("pvt_created").map(|c| c <= *g).unwrap_or(false),
        Filter::ModifiedFrom(g) => num("pvt_modified").map(|c| c >= *g).unwrap_or(false),
        Filter::ModifiedTo(g) => num("pvt_modified").map(|c| c <= *g).unwrap_or(false),
    }
}

/// One page of live callflows (all of them with `paginate=false`), plus the id the next page
/// starts at. With filters, batches are read until the page is full or rows run out.
pub async fn collect(
    state: &AppState,
    account_id: &str,
    page: &Page,
    filters: &Filters,
) -> ApiResult<(Vec<StoredCallflow>, Option<String>)> {
    let want = if page.paginate {
        page.page_size.saturating_add(1)
    } else {
        i64::MAX
    };
    let batch = if filters.is_empty() {
        want
    } else {
        FILTER_BATCH
    };
    let mut out: Vec<StoredCallflow> = Vec::new();
    let mut start = page.start.clone();
    let mut skip_first = false;
    loop {
        let rows = state
            .store
            .list_callflows(
                account_id,
                start.as_deref(),
                batch.saturating_add(i64::from(skip_first)),
                page.descending,
            )
            .await?;
        let fetched = rows.len() as i64;
        let mut last = None;
        for (i, row) in rows.into_iter().enumerate() {
            if skip_first && i == 0 {
                continue;
            }
            last = Some(row.id.clone());
            if filters.keep(&row.doc) {
                out.push(row);
                if out.len() as i64 >= want {
                    break;
                }
            }
        }
        if out.len() as i64 >= want
            || fetched < batch.saturating_add(i64::from(skip_first))
            || last.is_none()
        {
            break;
        }
        start = last;
        skip_first = true;
    }
    let next = if page.paginate && out.len() as i64 > page.page_size {
        out.pop().map(|d| d.id)
    } else {
        None
    };
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn start_keys_round_trip_in_kazoo_format() {
        let id = "3f0c1e0000000000000000000000abcd";
        let k = encode_key(id);
        assert_eq!(decode_key(&k), id);
        assert_eq!(decode_key("plain"), "plain");
    }

    #[test]
    fn filters_follow_kazoo_stringification() {
        let doc = json!({"name": "Main", "numbers": ["1000"], "flow": {"module": "user"}, "flags": [], "pvt_created": 10});
        let doc = doc.as_object().unwrap();
        let f = |q: &[(&str, &str)]| {
            Filters::from_query(
                &q.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
            .keep(doc)
        };
        assert!(f(&[("filter_name", "Main")]));
        assert!(f(&[("filter_numbers", "1000")]));
        assert!(f(&[("filter_flow.module", "user")]));
        assert!(f(&[("filter_name", "[\"x\",\"Main\"]")]));
        assert!(!f(&[("filter_not_name", "Main")]));
        assert!(f(&[("has_key", "flags"), ("value_missing", "flags")]));
        assert!(!f(&[("has_value", "flags")]));
        assert!(f(&[("key_missing", "ringback")]));
        assert!(f(&[("created_from", "10"), ("created_to", "10")]));
        assert!(!f(&[("created_from", "11")]));
    }
}
