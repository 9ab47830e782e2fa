//! Listing mechanics shared by collection endpoints: Kazoo's paging options, its start keys
//! (Erlang terms, base64url-encoded), the view-key collation they are compared with, the
//! paging loop, and the query-string filters (evaluated on the full stored document).

use std::cmp::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::store::StoredCallflow;

use super::error::{ApiError, ApiResult};
use super::request::ReqCtx;
use super::AppState;

/// Default page size (Kazoo's `crossbar.pagination_page_size`).
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Kazoo's `crossbar.load_view_chunk_size`: the largest `chunk_size` a request may ask for.
pub const MAX_CHUNK_SIZE: i64 = 50;
/// Rows read per round trip while filters are active.
const FILTER_BATCH: i64 = 200;

// ---------------------------------------------------------------------------------------
// Numbers and booleans as Kazoo converts them.
// ---------------------------------------------------------------------------------------

/// `kz_term:to_integer/1` (non-strict) on text: an Erlang integer literal (optional sign,
/// digits, nothing else), else an Erlang float literal (`1.5`, `-2.0e3`: digits on both
/// sides of the dot) rounded half away from zero. Padding, `1e5`, `.5` and `1.` fail.
/// Integers beyond 64 bits saturate (Erlang would keep a bignum).
pub fn erlang_to_integer(s: &str) -> Option<i64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let negative = s.starts_with('-');
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            s.parse::<i64>()
                .unwrap_or(if negative { i64::MIN } else { i64::MAX }),
        );
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (whole, frac) = mantissa.split_once('.')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent
        .map(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
        .unwrap_or(true);
    if !(digits(whole) && digits(frac) && exponent_ok) {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    // Erlang refuses a literal that overflows a double.
    f.is_finite().then(|| f.round() as i64)
}

/// `kz_term:to_integer/1` on a JSON value (a query value is a string, or `true` when bare).
fn value_to_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::String(s) => erlang_to_integer(s),
        _ => None,
    }
}

/// `kz_term:is_true/1`: only the string `true` or JSON `true`.
fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true)) || v.as_str() == Some("true")
}

/// `kz_term:is_false/1`: only the string `false` or JSON `false`.
fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false)) || v.as_str() == Some("false")
}

// ---------------------------------------------------------------------------------------
// Start keys: Erlang terms in the external term format.
// ---------------------------------------------------------------------------------------

/// The Erlang terms a view key or a start key can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Bin(String),
    Int(i64),
    Float(f64),
    /// `true`, `false` and `null` collate as JSON literals; other atoms as strings.
    Atom(String),
    List(Vec<Term>),
}

impl Term {
    /// A start key that came as JSON (from `data` or the envelope rather than the query).
    fn from_json(v: &Value) -> Term {
        match v {
            Value::String(s) => decode_key(s),
            Value::Bool(b) => Term::Atom(b.to_string()),
            Value::Null => Term::Atom("null".into()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Term::Int(i),
                None => Term::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::Array(items) => Term::List(items.iter().map(Term::from_json).collect()),
            Value::Object(_) => Term::Bin(v.to_string()),
        }
    }

    /// A view key emitted as JSON (strings stay strings).
    pub fn of_json(v: &Value) -> Term {
        match v {
            Value::String(s) => Term::Bin(s.clone()),
            Value::Array(items) => Term::List(items.iter().map(Term::of_json).collect()),
            other => Term::from_json(other),
        }
    }

    fn contains_nul(&self) -> bool {
        match self {
            Term::Bin(s) | Term::Atom(s) => s.contains('\0'),
            Term::List(items) => items.iter().any(Term::contains_nul),
            Term::Int(_) | Term::Float(_) => false,
        }
    }

    /// CouchDB's collation classes: null < false < true < numbers < strings < arrays.
    fn class(&self) -> u8 {
        match self {
            Term::Atom(a) if a == "null" => 0,
            Term::Atom(a) if a == "false" => 1,
            Term::Atom(a) if a == "true" => 2,
            Term::Int(_) | Term::Float(_) => 3,
            Term::Bin(_) | Term::Atom(_) => 4,
            Term::List(_) => 5,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Term::Bin(s) | Term::Atom(s) => Some(s),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Term::Int(i) => Some(*i as f64),
            Term::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// `api_util:encode_start_key`: base64url without padding of `term_to_binary(Key)`.
pub fn encode_term(term: &Term) -> String {
    let mut out = vec![131];
    write_term(term, &mut out);
    URL_SAFE_NO_PAD.encode(out)
}

/// A doc id as a start key (a binary term).
pub fn encode_key(id: &str) -> String {
    encode_term(&Term::Bin(id.to_string()))
}

fn write_term(term: &Term, out: &mut Vec<u8>) {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    match term {
        Term::Bin(s) => {
            out.push(109);
            out.extend_from_slice(&len32(s.len()));
            out.extend_from_slice(s.as_bytes());
        }
        Term::Atom(a) => {
            out.push(119);
            out.push(u8::try_from(a.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(&a.as_bytes()[..a.len().min(255)]);
        }
        Term::Int(i) if (0..=255).contains(i) => out.extend_from_slice(&[97, *i as u8]),
        Term::Int(i) if i32::try_from(*i).is_ok() => {
            out.push(98);
            out.extend_from_slice(&(*i as i32).to_be_bytes());
        }
        Term::Int(i) => {
            let mut magnitude = i.unsigned_abs();
            let mut digits = Vec::new();
            while magnitude > 0 {
                digits.push((magnitude & 0xff) as u8);
                magnitude >>= 8;
            }
            out.extend_from_slice(&[110, digits.len() as u8, u8::from(*i < 0)]);
            out.extend_from_slice(&digits);
        }
        Term::Float(f) => {
            out.push(70);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Term::List(items) if items.is_empty() => out.push(106),
        Term::List(items) => {
            out.push(108);
            out.extend_from_slice(&len32(items.len()));
            for item in items {
                write_term(item, out);
            }
            out.push(106);
        }
    }
}

/// `api_util:decode_start_key`: base64url-decode and `binary_to_term`; when either fails the
/// text itself is the key. Bytes after the term are ignored, as `binary_to_term` does.
/// Kinds of term a view key cannot hold (tuples, pids, maps...) count as failures, and so
/// does a key holding U+0000 (the store could not take it).
pub fn decode_key(raw: &str) -> Term {
    let term = URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .ok()
        .and_then(|bytes| {
            let (&version, mut rest) = bytes.split_first()?;
            (version == 131).then_some(())?;
            read_term(&mut rest, 0)
        })
        .filter(|t| !t.contains_nul());
    term.unwrap_or_else(|| Term::Bin(raw.to_string()))
}

fn read_term(input: &mut &[u8], depth: usize) -> Option<Term> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if input.len() < n {
            return None;
        }
        let (head, tail) = input.split_at(n);
        *input = tail;
        Some(head)
    }
    fn u32_at(input: &mut &[u8]) -> Option<usize> {
        let b = take(input, 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    if depth > 32 {
        return None;
    }
    let tag = *take(input, 1)?.first()?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    match tag {
        97 => Some(Term::Int(i64::from(take(input, 1)?[0]))),
        98 => {
            let b = take(input, 4)?;
            Some(Term::Int(i64::from(i32::from_be_bytes([
                b[0], b[1], b[2], b[3],
            ]))))
        }
        110 => {
            let n = usize::from(take(input, 1)?[0]);
            let sign = take(input, 1)?[0];
            let digits = take(input, n)?;
            if n > 8 {
                return None;
            }
            let magnitude = digits
                .iter()
                .rev()
                .fold(0u64, |acc, d| (acc << 8) | u64::from(*d));
            let value = i64::try_from(magnitude).ok()?;
            Some(Term::Int(if sign == 0 { value } else { -value }))
        }
        70 => {
            let b = take(input, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Some(Term::Float(f64::from_be_bytes(a)))
        }
        100 | 118 => {
            let b = take(input, 2)?;
            let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
            let bytes = take(input, n)?;
            // ATOM_EXT is Latin-1.
            let name = if tag == 100 {
                bytes.iter().map(|&c| char::from(c)).collect()
            } else {
                text(bytes)?
            };
            Some(Term::Atom(name))
        }
        115 | 119 => {
            let n = usize::from(take(input, 1)?[0]);
            let bytes = take(input, n)?;
            let name = if tag == 115 {
                bytes.iter().map(|&c| char::from(c)).collect()
            } else {
                text(bytes)?
            };
            Some(Term::Atom(name))
        }
        109 => {
            let n = u32_at(input)?;
            Some(Term::Bin(text(take(input, n)?)?))
        }
        106 => Some(Term::List(Vec::new())),
        107 => {
            let b = take(input, 2)?;
            let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
            let bytes = take(input, n)?;
            Some(Term::List(
                bytes.iter().map(|&c| Term::Int(i64::from(c))).collect(),
            ))
        }
        108 => {
            let n = u32_at(input)?;
            if n > input.len() {
                return None;
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_term(input, depth + 1)?);
            }
            // Only proper lists: the tail must be `[]`.
            (take(input, 1)? == [106]).then_some(Term::List(items))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Collation of view keys (CouchDB's, restricted to what callflowd's views emit).
// ---------------------------------------------------------------------------------------

/// CouchDB orders view keys by type class, then within the class; strings use ICU. This
/// approximates ICU for the keys our views emit: punctuation before digits before letters,
/// letters compared without case first, then lower case before upper case at the first
/// difference. So `abz` < `abZ` < `abz0`, which is what makes Kazoo's search end key
/// (`v` followed by `Z`) leave out keys that continue with `z` and something more.
pub fn collate(a: &Term, b: &Term) -> Ordering {
    let by_class = a.class().cmp(&b.class());
    if by_class != Ordering::Equal {
        return by_class;
    }
    match (a, b) {
        (Term::List(x), Term::List(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = collate(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => match (a.number(), b.number()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => match (a.text(), b.text()) {
                (Some(x), Some(y)) => collate_text(x, y),
                _ => Ordering::Equal,
            },
        },
    }
}

fn collate_text(a: &str, b: &str) -> Ordering {
    let primary = |c: char| -> (u8, char) {
        if c.is_ascii_digit() {
            (1, c)
        } else if c.is_alphabetic() {
            (2, c.to_lowercase().next().unwrap_or(c))
        } else {
            (0, c)
        }
    };
    let first = a.chars().map(primary).cmp(b.chars().map(primary));
    if first != Ordering::Equal {
        return first;
    }
    for (x, y) in a.chars().zip(b.chars()) {
        if x != y {
            // Same letter in another case: lower case first.
            return y.is_lowercase().cmp(&x.is_lowercase());
        }
    }
    a.cmp(b)
}

// ---------------------------------------------------------------------------------------
// Paging options.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Page {
    pub paginate: bool,
    pub page_size: i64,
    /// The decoded start key the client sent (Kazoo echoes it re-encoded).
    pub start: Option<Term>,
    pub descending: bool,
    /// Most rows answered whatever was asked (`--max-page-size` when paging,
    /// `--max-listing-rows` with `paginate=false`).
    pub cap: usize,
}

impl Page {
    /// Kazoo's listing options, checked in its order (`crossbar_view:build_general_load_params`):
    /// `chunk_size` first (every listing, paged or not), then `page_size` when paging.
    pub fn from_request(ctx: &ReqCtx, config: &super::ApiConfig) -> ApiResult<Self> {
        check_chunk_size(ctx)?;
        // `cb_context:should_paginate`: absent means on; present means on only if "true".
        let paginate = ctx.option("paginate").map(|v| is_true(&v)).unwrap_or(true);
        let page_size = match (paginate, ctx.option("page_size")) {
            (false, _) | (true, None) => DEFAULT_PAGE_SIZE,
            // `crossbar_view:get_page_size_from_request`.
            (true, Some(v)) => match value_to_integer(&v) {
                Some(n) if n > 0 => n,
                Some(_) => return Err(ApiError::faulty_request("page size must be at least 1")),
                None => return Err(ApiError::faulty_request("invalid page size")),
            },
        };
        // `crossbar_view:direction`: only the query string, only exact `true` / `false`.
        let descending = ctx.query_value("descending").is_some_and(|v| is_true(&v))
            || ctx.query_value("ascending").is_some_and(|v| is_false(&v));
        let start = ctx.option("start_key").map(|v| Term::from_json(&v));
        let cap = if paginate {
            config.max_page_size
        } else {
            config.max_listing_rows
        };
        Ok(Self {
            paginate,
            page_size,
            start,
            descending,
            cap: cap.max(1),
        })
    }

    /// Rows a page may hold: the page size asked for, never more than the cap (a
    /// `paginate=false` listing holds at most the cap too).
    fn limit(&self) -> Option<usize> {
        let asked = if self.paginate {
            usize::try_from(self.page_size).unwrap_or(usize::MAX)
        } else {
            usize::MAX
        };
        Some(asked.min(self.cap))
    }

    /// Whether the reply carries paging keys: when paging, or when a `paginate=false` listing
    /// was cut at the cap (its `next_start_key` says where the rest begins).
    pub fn shows_paging(&self, next: bool) -> bool {
        self.paginate || next
    }
}

/// `crossbar_view:get_chunk_size`: read from the query string only. Zero matches none of
/// Kazoo's cases (its crash answers 503 `datastore_fault`); a client error deserves a 4xx, so
/// it gets the same 404 as a negative size (docs/compatibility.md).
fn check_chunk_size(ctx: &ReqCtx) -> ApiResult<()> {
    let Some(v) = ctx.query_value("chunk_size") else {
        return Ok(());
    };
    match value_to_integer(&v) {
        None => Err(ApiError::faulty_request("invalid chunk size")),
        Some(n) if n < 1 => Err(ApiError::faulty_request("chunk size must be at least 1")),
        Some(n) if n > MAX_CHUNK_SIZE => Err(ApiError::faulty_request(&format!(
            "chunk size must be lower than {MAX_CHUNK_SIZE}"
        ))),
        Some(_) => Ok(()),
    }
}

/// Kazoo's paging loop (`crossbar_view:get_results`): rows are read in view order; a row
/// that passes the filters joins the page; once the page is full, the next row read (passing
/// the filters or not) is the first unread one and its key is `next_start_key`.
pub struct Pager<T> {
    limit: Option<usize>,
    pub rows: Vec<T>,
    pub next: Option<T>,
}

impl<T> Pager<T> {
    pub fn new(page: &Page) -> Self {
        Self {
            limit: page.limit(),
            rows: Vec::new(),
            next: None,
        }
    }

    /// Offers the next row in view order; `false` once the page is complete.
    pub fn offer(&mut self, row: T, keep: impl FnOnce(&T) -> bool) -> bool {
        if self.limit.is_some_and(|l| self.rows.len() >= l) {
            self.next = Some(row);
            return false;
        }
        if keep(&row) {
            self.rows.push(row);
        }
        true
    }
}

/// Where a callflow listing (keyed by doc id) starts for a start key of any kind.
enum IdStart {
    From(Option<String>),
    Nothing,
}

fn id_start(page: &Page) -> IdStart {
    match &page.start {
        None => IdStart::From(None),
        Some(Term::Bin(id)) => IdStart::From(Some(id.clone())),
        // A key of a class below strings starts before every id (ascending) or after none.
        Some(t) if t.class() < 4 => {
            if page.descending {
                IdStart::Nothing
            } else {
                IdStart::From(None)
            }
        }
        Some(Term::Atom(a)) => IdStart::From(Some(a.clone())),
        Some(_) => {
            if page.descending {
                IdStart::From(None)
            } else {
                IdStart::Nothing
            }
        }
    }
}

/// One page of live callflows (all of them with `paginate=false`), plus the id of the first
/// unread row when more remain. Batches are read until the page is full or rows run out.
pub async fn collect(
    state: &AppState,
    account_id: &str,
    page: &Page,
    filters: &Filters,
) -> ApiResult<(Vec<StoredCallflow>, Option<String>)> {
    collect_from(state, account_id, None, page, filters).await
}

/// [`collect`] over the callflows (`doc_type` `None`) or the live documents of one type.
pub async fn collect_from(
    state: &AppState,
    account_id: &str,
    doc_type: Option<&str>,
    page: &Page,
    filters: &Filters,
) -> ApiResult<(Vec<StoredCallflow>, Option<String>)> {
    collect_rows(state, account_id, doc_type, false, page, filters).await
}

/// [`collect_from`] over the soft-deleted documents instead of the live ones.
pub async fn collect_deleted(
    state: &AppState,
    account_id: &str,
    doc_type: Option<&str>,
    page: &Page,
    filters: &Filters,
) -> ApiResult<(Vec<StoredCallflow>, Option<String>)> {
    collect_rows(state, account_id, doc_type, true, page, filters).await
}

async fn collect_rows(
    state: &AppState,
    account_id: &str,
    doc_type: Option<&str>,
    deleted: bool,
    page: &Page,
    filters: &Filters,
) -> ApiResult<(Vec<StoredCallflow>, Option<String>)> {
    let mut pager = Pager::new(page);
    let IdStart::From(mut start) = id_start(page) else {
        return Ok((Vec::new(), None));
    };
    let batch = match (filters.is_empty(), page.limit()) {
        (true, Some(l)) => i64::try_from(l).unwrap_or(i64::MAX).saturating_add(1),
        (true, None) => i64::MAX,
        (false, _) => FILTER_BATCH,
    };
    let mut skip_first = false;
    'batches: loop {
        let ask = batch.saturating_add(i64::from(skip_first));
        let rows = match doc_type {
            _ if deleted => {
                state
                    .store
                    .list_deleted(account_id, doc_type, start.as_deref(), ask, page.descending)
                    .await?
            }
            None => {
                state
                    .store
                    .list_callflows(account_id, start.as_deref(), ask, page.descending)
                    .await?
            }
            Some(doc_type) => {
                state
                    .store
                    .list_documents(account_id, doc_type, start.as_deref(), ask, page.descending)
                    .await?
            }
        };
        let fetched = rows.len() as i64;
        let mut last = None;
        for (i, row) in rows.into_iter().enumerate() {
            if skip_first && i == 0 {
                continue;
            }
            last = Some(row.id.clone());
            if !pager.offer(row, |r| filters.keep(&r.doc, &r.rev)) {
                break 'batches;
            }
        }
        if fetched < ask || last.is_none() {
            break;
        }
        start = last;
        skip_first = true;
    }
    Ok((pager.rows, pager.next.map(|d| d.id)))
}

// ---------------------------------------------------------------------------------------
// Query-string filters (`crossbar_filter`).
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Filter {
    /// `filter_KEY=VAL`; the value is `kz_term:to_binary` of the query value.
    Equals(String, String),
    NotEquals(String, String),
    /// Key filters; `None` when the query key came bare (Kazoo crashes on `true` as a key).
    HasKey(Option<String>),
    KeyMissing(Option<String>),
    HasValue(Option<String>),
    ValueMissing(Option<String>),
    /// Time filters; `None` when the value is not an integer as `kz_term:to_integer` reads it.
    CreatedFrom(Option<i64>),
    CreatedTo(Option<i64>),
    ModifiedFrom(Option<i64>),
    ModifiedTo(Option<i64>),
}

/// The ANDed query-string filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Filter>);

impl Filters {
    /// `crossbar_filter:filter_doc_by_querystring` reads every query parameter; the ones that
    /// are not filters pass every document.
    pub fn from_request(ctx: &ReqCtx) -> Self {
        Self::from_entries(ctx.query_entries())
    }

    fn from_entries<'a>(entries: impl Iterator<Item = (&'a str, Value)>) -> Self {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let key = |v: &Value| v.as_str().map(str::to_string);
        let int = |v: &Value| value_to_integer(v);
        let mut out = Vec::new();
        for (k, v) in entries {
            let f = if let Some(path) = k.strip_prefix("filter_not_") {
                Some(Filter::NotEquals(path.to_string(), text(&v)))
            } else if let Some(path) = k.strip_prefix("filter_") {
                Some(Filter::Equals(path.to_string(), text(&v)))
            } else {
                match k {
                    "has_key" => Some(Filter::HasKey(key(&v))),
                    "key_missing" => Some(Filter::KeyMissing(key(&v))),
                    "has_value" => Some(Filter::HasValue(key(&v))),
                    "value_missing" => Some(Filter::ValueMissing(key(&v))),
                    "created_from" => Some(Filter::CreatedFrom(int(&v))),
                    "created_to" => Some(Filter::CreatedTo(int(&v))),
                    "modified_from" => Some(Filter::ModifiedFrom(int(&v))),
                    "modified_to" => Some(Filter::ModifiedTo(int(&v))),
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

    /// Whether a stored document passes. Filters see the document as CouchDB returns it:
    /// the stored body (which holds `_id`) plus `_rev`, kept in its own column here.
    pub fn keep(&self, doc: &Map<String, Value>, rev: &str) -> bool {
        let doc = FilterDoc { doc, rev };
        // A filter that crashes in Kazoo drops the document (`should_filter_doc`).
        self.0.iter().all(|f| keep_one(f, &doc).unwrap_or(false))
    }
}

struct FilterDoc<'a> {
    doc: &'a Map<String, Value>,
    rev: &'a str,
}

/// `kz_json:get_value` on a dotted path: `Ok(None)` when absent, `Err(())` where Kazoo
/// crashes (a path that continues below a string, number, boolean or `null`). Array
/// segments are 1-based positions read with `kz_term:to_integer`.
fn lookup(doc: &FilterDoc<'_>, path: &str) -> Result<Option<Value>, ()> {
    let mut segments = path.split('.');
    let first = segments.next().unwrap_or_default();
    let mut cur = match doc.doc.get(first) {
        Some(v) => v.clone(),
        None if first == "_rev" => Value::String(doc.rev.to_string()),
        None => return Ok(None),
    };
    for seg in segments {
        cur = match cur {
            Value::Object(mut m) => match m.remove(seg) {
                Some(v) => v,
                None => return Ok(None),
            },
            Value::Array(mut items) => {
                match erlang_to_integer(seg)
                    .filter(|n| *n >= 1)
                    .and_then(|n| usize::try_from(n - 1).ok())
                    .filter(|n| *n < items.len())
                {
                    Some(n) => items.swap_remove(n),
                    None => return Ok(None),
                }
            }
            _ => return Err(()),
        };
    }
    Ok(Some(cur))
}

/// `kz_term:to_binary` as `kz_json:get_binary_value` applies it: a cast that fails gives the
/// default `""`. Lists are iolists: strings and bytes concatenated, anything else fails.
fn to_binary(v: &Value) -> Vec<u8> {
    fn iolist(items: &[Value], out: &mut Vec<u8>) -> Option<()> {
        for item in items {
            match item {
                Value::String(s) => out.extend_from_slice(s.as_bytes()),
                Value::Number(n) => out.push(u8::try_from(n.as_u64()?).ok()?),
                Value::Array(inner) => iolist(inner, out)?,
                _ => return None,
            }
        }
        Some(())
    }
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        // Atoms: `true`, `false`, and `null` as the text "null".
        Value::Bool(_) | Value::Null | Value::Number(_) | Value::Object(_) => {
            v.to_string().into_bytes()
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            iolist(items, &mut out).map(|_| out).unwrap_or_default()
        }
    }
}

/// `crossbar_filter:should_filter/2`: equal text, or the filter value is JSON that is a list
/// holding the text as a string, or is that string.
fn equals(doc_value: &[u8], wanted: &str) -> bool {
    if doc_value == wanted.as_bytes() {
        return true;
    }
    let is_it = |v: &Value| v.as_str().map(str::as_bytes) == Some(doc_value);
    match serde_json::from_str::<Value>(wanted) {
        Ok(Value::Array(items)) => items.iter().any(is_it),
        Ok(other) => is_it(&other),
        Err(_) => false,
    }
}

/// `kz_term:is_empty/1` on a JSON value.
fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty() || s == "0" || s == "undefined" || s == "NULL",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0) || n.as_f64() == Some(0.0),
        Value::Bool(_) => false,
    }
}

/// `kz_doc:created` / `kz_doc:modified`: `kz_json:get_integer_value`, `None` when absent or
/// not convertible.
fn timestamp(doc: &FilterDoc<'_>, key: &str) -> Option<i64> {
    doc.doc.get(key).and_then(value_to_integer)
}

/// `Err(())` stands for a crash, which drops the document.
fn keep_one(f: &Filter, doc: &FilterDoc<'_>) -> Result<bool, ()> {
    let text = |path: &str| -> Result<Vec<u8>, ()> {
        Ok(lookup(doc, path)?
            .map(|v| to_binary(&v))
            .unwrap_or_default())
    };
    let has_key = |path: &Option<String>| -> Result<bool, ()> {
        Ok(lookup(doc, path.as_deref().ok_or(())?)?.is_some())
    };
    let has_value = |path: &Option<String>| -> Result<bool, ()> {
        Ok(lookup(doc, path.as_deref().ok_or(())?)?.is_some_and(|v| !is_empty_value(&v)))
    };
    // Erlang orders every number before every atom, so a document without the timestamp
    // (`undefined`) passes a lower bound and fails an upper bound.
    let lower = |key: &str, g: &Option<i64>| -> Result<bool, ()> {
        let g = g.ok_or(())?;
        Ok(timestamp(doc, key).is_none_or(|t| g <= t))
    };
    let upper = |key: &str, g: &Option<i64>| -> Result<bool, ()> {
        let g = g.ok_or(())?;
        Ok(timestamp(doc, key).is_some_and(|t| g >= t))
    };
    match f {
        Filter::Equals(p, v) => Ok(equals(&text(p)?, v)),
        Filter::NotEquals(p, v) => Ok(!equals(&text(p)?, v)),
        Filter::HasKey(p) => has_key(p),
        Filter::KeyMissing(p) => has_key(p).map(|b| !b),
        Filter::HasValue(p) => has_value(p),
        Filter::ValueMissing(p) => has_value(p).map(|b| !b),
        Filter::CreatedFrom(g) => lower("pvt_created", g),
        Filter::CreatedTo(g) => upper("pvt_created", g),
        Filter::ModifiedFrom(g) => lower("pvt_modified", g),
        Filter::ModifiedTo(g) => upper("pvt_modified", g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn start_keys_round_trip_in_kazoo_format() {
        let id = "3f0c1e0000000000000000000000abcd";
        let k = encode_key(id);
        assert_eq!(decode_key(&k), Term::Bin(id.into()));
        assert_eq!(decode_key("plain"), Term::Bin("plain".into()));
        let list = Term::List(vec![Term::Bin("callflow".into()), Term::Bin("12".into())]);
        assert_eq!(decode_key(&encode_term(&list)), list);
        for i in [0, 255, 256, -1, 1 << 40, i64::MIN + 1] {
            assert_eq!(decode_key(&encode_term(&Term::Int(i))), Term::Int(i));
        }
    }

    #[test]
    fn erlang_integer_conversion() {
        assert_eq!(erlang_to_integer("5"), Some(5));
        assert_eq!(erlang_to_integer("+5"), Some(5));
        assert_eq!(erlang_to_integer("1.5"), Some(2));
        assert_eq!(erlang_to_integer("-2.5"), Some(-3));
        assert_eq!(erlang_to_integer("1.0e2"), Some(100));
        for bad in [" 5", "5 ", "1e5", ".5", "1.", "", "abc", "0x10"] {
            assert_eq!(erlang_to_integer(bad), None, "{bad}");
        }
    }

    #[test]
    fn collation_puts_the_search_end_key_where_icu_does() {
        let s = |x: &str| Term::Bin(x.into());
        assert_eq!(collate(&s("abz"), &s("abZ")), Ordering::Less);
        assert_eq!(collate(&s("abz0"), &s("abZ")), Ordering::Greater);
        assert_eq!(collate(&s("ab9"), &s("abZ")), Ordering::Less);
        assert_eq!(collate(&Term::Int(1), &s("a")), Ordering::Less);
        assert_eq!(collate(&Term::List(vec![]), &s("a")), Ordering::Greater);
    }

    #[test]
    fn filters_follow_kazoo_stringification() {
        let doc = json!({"_id": "d", "name": "Main", "numbers": ["1000"], "flow": {"module": "user"},
                         "flags": [], "pvt_created": 10, "gone": null, "on": true});
        let doc = doc.as_object().unwrap();
        let f = |q: &[(&str, Value)]| {
            Filters::from_entries(q.iter().map(|(a, b)| (*a, b.clone()))).keep(doc, "1-abc")
        };
        let s = |x: &str| json!(x);
        assert!(f(&[("filter_name", s("Main"))]));
        assert!(f(&[("filter_numbers", s("1000"))]));
        assert!(f(&[("filter_numbers.1", s("1000"))]));
        assert!(f(&[("filter_flow.module", s("user"))]));
        assert!(f(&[("filter_name", s("[\"x\",\"Main\"]"))]));
        assert!(!f(&[("filter_not_name", s("Main"))]));
        assert!(f(&[("filter_gone", s("null"))]));
        assert!(f(&[("filter_on", json!(true))]));
        assert!(f(&[("has_key", s("_rev")), ("has_key", s("_id"))]));
        assert!(f(&[("filter__rev", s("1-abc"))]));
        assert!(!f(&[("has_key", json!(true))]));
        assert!(!f(&[("key_missing", s("name.first"))]));
        assert!(f(&[("has_key", s("flags")), ("value_missing", s("flags"))]));
        assert!(!f(&[("has_value", s("flags"))]));
        assert!(f(&[("key_missing", s("ringback"))]));
        assert!(f(&[("created_from", s("10")), ("created_to", s("10"))]));
        assert!(f(&[("created_from", s("9.5"))]));
        assert!(!f(&[("created_from", s("11"))]));
        assert!(!f(&[("created_from", s("abc"))]));
        assert!(f(&[("modified_from", s("1"))]));
        assert!(!f(&[("modified_to", s("1"))]));
    }
}
