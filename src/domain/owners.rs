//! Who a document belongs to, as Kazoo's `devices/listing_by_owner` view reads it: the
//! document's `owner_id`, plus (for a device) every user hot-desked into it, the keys of
//! `hotdesk.users`. Pure; the store indexes these in each write transaction.

use serde_json::{Map, Value};

/// `(owner id, hot-desked)` pairs, each owner once; the owner proper is never "hot-desked".
pub fn owners(doc: &Map<String, Value>) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let owner = doc
        .get("owner_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(owner) = owner {
        out.push((owner.to_string(), false));
    }
    if let Some(users) = doc
        .get("hotdesk")
        .and_then(Value::as_object)
        .and_then(|h| h.get("users"))
        .and_then(Value::as_object)
    {
        for user in users.keys() {
            if !user.is_empty() && out.iter().all(|(o, _)| o != user) {
                out.push((user.clone(), true));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owner_first_then_hotdesked_users_once_each() {
        let doc = json!({"owner_id": "u1", "hotdesk": {"users": {"u2": {}, "u1": {}}}});
        assert_eq!(
            owners(doc.as_object().unwrap()),
            vec![("u1".to_string(), false), ("u2".to_string(), true)]
        );
        assert!(owners(json!({"owner_id": ""}).as_object().unwrap()).is_empty());
    }
}
