//! Reading dumps as a stream: callflowd's NDJSON export and Kazoo's CouchDB dumps
//! (`_all_docs?include_docs=true`, `_bulk_docs` bodies, a plain array of documents), one
//! document at a time, whatever the file's size.
//!
//! Owns the formats, nothing else: what a document is becomes decided in [`super::import`].
//! Runs on a blocking thread ([`spawn_reader`]); items go out through a bounded channel, so a
//! slow store holds the reader back instead of filling memory.

use std::fmt;
use std::io::{BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// One document read from a dump.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    /// The document's type: the record's `type`, else its `pvt_type`.
    pub doc_type: Option<String>,
    pub id: Option<String>,
    /// The revision it had where it came from (`rev`, `_rev`).
    pub rev: Option<String>,
    /// The account it belongs to, as the dump says (`account_id`, `pvt_account_id`,
    /// `pvt_account_db`).
    pub account_id: Option<String>,
    pub doc: Map<String, Value>,
}

/// What the reader hands on.
#[derive(Debug)]
pub enum Item {
    Doc(Box<SourceDoc>),
    /// A row with nothing to import: a design document, a row without its document (deleted in
    /// CouchDB itself), something that is not a JSON object.
    Skipped {
        reason: &'static str,
    },
    /// The file stopped being readable JSON: nothing after this point was read.
    Broken(String),
}

/// Counts the bytes read, for progress.
pub struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Counting<R> {
    pub fn new(inner: R, read: Arc<AtomicU64>) -> Self {
        Self { inner, read }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads every top-level JSON value of `input` (one per line for NDJSON, or one whole dump),
/// handing each document to `sink` in file order; stops early when `sink` returns false.
pub fn read_all(input: impl BufRead, sink: &mut dyn FnMut(Item) -> bool) {
    let mut input = input;
    let mut go_on = true;
    while go_on {
        match skip_whitespace(&mut input) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                sink(Item::Broken(format!("reading the file failed: {e}")));
                return;
            }
        }
        // A fresh deserializer per top-level value: after an object's closing brace it has read
        // nothing more, so the next value starts where this one ended.
        let mut de = serde_json::Deserializer::from_reader(&mut input);
        let seed = TopSeed { sink, go_on: true };
        match seed.deserialize(&mut de) {
            Ok(more) => go_on = more,
            Err(e) => {
                sink(Item::Broken(format!("the file is not valid JSON: {e}")));
                return;
            }
        }
    }
}

/// Consumes whitespace; false at the end of the input.
fn skip_whitespace(input: &mut impl BufRead) -> std::io::Result<bool> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let blank = buf
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
            .count();
        let all = blank == buf.len();
        input.consume(blank);
        if !all {
            return Ok(true);
        }
    }
}

/// Reads the inputs one after the other in a blocking thread; items arrive on the returned
/// channel (at most `buffer` waiting).
pub fn spawn_reader(
    inputs: Vec<Box<dyn BufRead + Send>>,
    buffer: usize,
) -> tokio::sync::mpsc::Receiver<Item> {
    let (tx, rx) = tokio::sync::mpsc::channel(buffer.max(1));
    tokio::task::spawn_blocking(move || {
        let mut open = true;
        for input in inputs {
            read_all(input, &mut |item| {
                let broken = matches!(item, Item::Broken(_));
                open = tx.blocking_send(item).is_ok() && !broken;
                open
            });
            if !open {
                return;
            }
        }
    });
    rx
}

/// The account documents of the inputs (`pvt_type: account`, or NDJSON records of type
/// `account`), read ahead of an import that creates accounts: Kazoo's dump sorts documents by
/// id, so an account's own document comes anywhere among its documents.
pub fn accounts_in(input: impl BufRead) -> Result<Vec<SourceDoc>, String> {
    let mut found = Vec::new();
    let mut broken = None;
    read_all(input, &mut |item| match item {
        Item::Doc(doc) if doc.doc_type.as_deref() == Some("account") => {
            found.push(*doc);
            true
        }
        Item::Broken(e) => {
            broken = Some(e);
            false
        }
        _ => true,
    });
    match broken {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// A top-level value: a Kazoo dump (`rows` or `docs` streamed), an array of documents, or one
/// document or NDJSON record. Answers whether to go on.
struct TopSeed<'a> {
    sink: &'a mut dyn FnMut(Item) -> bool,
    go_on: bool,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<bool, A::Error> {
        let mut fields = Map::new();
        let mut streamed = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "rows" | "docs" if !fields.contains_key("doc") => {
                    streamed = true;
                    let rows = key == "rows";
                    self.go_on = map.next_value_seed(ListSeed {
                        sink: &mut *self.sink,
                        rows,
                    })?;
                }
                _ => {
                    let value: Value = map.next_value()?;
                    fields.insert(key, value);
                }
            }
        }
        if streamed {
            return Ok(self.go_on);
        }
        Ok((self.sink)(record_or_doc(fields)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        ListSeed {
            sink: self.sink,
            rows: false,
        }
        .visit_seq(seq)
    }
}

/// A list streamed element by element: `_all_docs` rows, or documents.
struct ListSeed<'a> {
    sink: &'a mut dyn FnMut(Item) -> bool,
    rows: bool,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            let item = match value {
                Value::Object(row) if self.rows => row_item(row),
                Value::Object(doc) => record_or_doc(doc),
                _ => Item::Skipped {
                    reason: "not_an_object",
                },
            };
            if !(self.sink)(item) {
                // Read the rest without keeping it, so the JSON still ends well.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }
}

/// An `_all_docs` row: its `doc`, or a skip when CouchDB sent none (a deleted document, or a
/// dump made without `include_docs=true`).
fn row_item(mut row: Map<String, Value>) -> Item {
    match row.remove("doc") {
        Some(Value::Object(doc)) => record_or_doc(doc),
        _ => {
            let deleted = row
                .get("value")
                .and_then(|v| v.get("deleted"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Item::Skipped {
                reason: if deleted {
                    "deleted_in_couchdb"
                } else {
                    "no_document"
                },
            }
        }
    }
}

/// An NDJSON record (`{"type","id","rev","account_id","doc"}`) or a bare Kazoo document.
fn record_or_doc(mut fields: Map<String, Value>) -> Item {
    let text =
        |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    if fields.contains_key("type") && fields.get("doc").is_some_and(Value::is_object) {
        if let Some(Value::Object(doc)) = fields.remove("doc") {
            return Item::Doc(Box::new(SourceDoc {
                doc_type: text(&fields, "type").or_else(|| text(&doc, "pvt_type")),
                id: text(&fields, "id").or_else(|| text(&doc, "_id")),
                rev: text(&fields, "rev").or_else(|| text(&doc, "_rev")),
                account_id: text(&fields, "account_id").or_else(|| account_of(&doc)),
                doc,
            }));
        }
    }
    let id = text(&fields, "_id").or_else(|| text(&fields, "id"));
    if id.as_deref().is_some_and(|id| id.starts_with("_design/")) {
        return Item::Skipped {
            reason: "design_document",
        };
    }
    Item::Doc(Box::new(SourceDoc {
        doc_type: text(&fields, "pvt_type"),
        rev: text(&fields, "_rev"),
        account_id: account_of(&fields),
        id,
        doc: fields,
    }))
}

/// The account a Kazoo document says it is in: `pvt_account_id`, else the id encoded in
/// `pvt_account_db` (`account%2Fab%2Fcd%2Fef...`, `account/ab/cd/ef...`).
pub fn account_of(doc: &Map<String, Value>) -> Option<String> {
    if let Some(id) = doc.get("pvt_account_id").and_then(Value::as_str) {
        if !id.is_empty() {
            return Some(id.to_string());
        }
    }
    let db = doc.get("pvt_account_db").and_then(Value::as_str)?;
    account_of_db(db)
}

/// The account id of a Kazoo account database name, encoded or not.
pub fn account_of_db(db: &str) -> Option<String> {
    let plain = db.replace("%2F", "/").replace("%2f", "/");
    let rest = plain.strip_prefix("account/")?;
    // Modb names carry a `-YYYYMM` suffix: not an account database.
    let id: String = rest.chars().filter(|c| *c != '/').collect();
    (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Item> {
        let mut out = Vec::new();
        read_all(text.as_bytes(), &mut |i| {
            out.push(i);
            true
        });
        out
    }

    fn ids(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Doc(d) => d.id.clone().unwrap_or_default(),
                Item::Skipped { reason } => format!("skip:{reason}"),
                Item::Broken(_) => "broken".into(),
            })
            .collect()
    }

    #[test]
    fn an_all_docs_dump_streams_its_rows_and_skips_design_and_deleted_rows() {
        let dump = r#"{"total_rows":4,"offset":0,"rows":[
{"id":"_design/callflows","key":"_design/callflows","value":{"rev":"1-a"},"doc":{"_id":"_design/callflows","_rev":"1-a"}},
{"id":"cf1","key":"cf1","value":{"rev":"3-b"},"doc":{"_id":"cf1","_rev":"3-b","pvt_type":"callflow","pvt_account_db":"account%2F0123456789abcdef0123456789abcdef","numbers":["100"]}},
{"id":"gone","key":"gone","value":{"rev":"2-c","deleted":true},"doc":null},
{"id":"dev1","key":"dev1","value":{"rev":"1-d"},"doc":{"_id":"dev1","_rev":"1-d","pvt_type":"device"}}
]}"#;
        let items = read(dump);
        assert_eq!(
            ids(&items),
            [
                "skip:design_document",
                "cf1",
                "skip:deleted_in_couchdb",
                "dev1"
            ]
        );
        let Item::Doc(cf) = &items[1] else { panic!() };
        assert_eq!(cf.rev.as_deref(), Some("3-b"));
        assert_eq!(cf.doc_type.as_deref(), Some("callflow"));
        assert_eq!(
            cf.account_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
    }

    #[test]
    fn ndjson_records_and_several_dumps_in_one_stream_are_read_in_order() {
        let text = concat!(
            r#"{"type":"callflow","id":"a","rev":"2-x","account_id":"acc","doc":{"_id":"a","numbers":["1"]}}"#,
            "\n",
            r#"{"type":"device","id":"b","doc":{"_id":"b"}}"#,
            "\n\n",
            r#"{"rows":[{"id":"c","doc":{"_id":"c","pvt_type":"vmbox"}}]}"#,
            "\n",
            r#"[{"_id":"d","pvt_type":"menu"}]"#
        );
        let items = read(text);
        assert_eq!(ids(&items), ["a", "b", "c", "d"]);
        let Item::Doc(a) = &items[0] else { panic!() };
        assert_eq!(a.account_id.as_deref(), Some("acc"));
        assert_eq!(a.rev.as_deref(), Some("2-x"));
    }

    #[test]
    fn broken_json_stops_the_stream_with_an_error() {
        let items = read("{\"type\":\"callflow\",\"doc\":{}}\n{\"type\": oops}\n");
        assert!(matches!(items.last(), Some(Item::Broken(_))), "{items:?}");
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn account_databases_decode_to_account_ids() {
        assert_eq!(
            account_of_db("account%2F01%2F23%2F456789abcdef0123456789abcdef").as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            account_of_db("account/01/23/456789abcdef0123456789abcdef").as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(account_of_db("account%2F01%2F23%2F4567-201901"), None);
    }
}
