//! Creating accounts (with their API key and optional first user), shared by the HTTP API,
//! `callflowd create-account` and the first start of `callflowd serve`.

use serde_json::{Map, Value};

use crate::auth::{
    hash_secret, md5_credentials, new_api_key, sha1_credentials, API_KEY_PREFIX_LEN,
};
use crate::store::{Account, Store, StoreError, StoreResult, User};

/// What to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub realm: Option<String>,
    pub parent: Option<String>,
    /// Ancestor ids, root first.
    pub tree: Vec<String>,
    pub doc: Map<String, Value>,
    /// `(username, password)` of an admin user to create with the account.
    pub admin: Option<(String, String)>,
}

/// What was created; `api_key` is the only copy of the key in clear.
#[derive(Debug, Clone)]
pub struct CreatedAccount {
    pub account: Account,
    pub api_key: String,
    pub user_id: Option<String>,
}

pub async fn new_account(store: &dyn Store, new: NewAccount) -> StoreResult<CreatedAccount> {
    let api_key = new_api_key();
    let key = api_key.clone();
    let admin = new.admin.clone();
    // argon2 is deliberately slow: keep it off the async workers.
    let (key_hash, user_hashes) = crate::auth::hasher::pool()
        .run(move || -> anyhow::Result<_> {
            let key_hash = hash_secret(&key)?;
            let user_hashes = match admin {
                Some((user, pass)) => Some((
                    hash_secret(&md5_credentials(&user, &pass))?,
                    hash_secret(&sha1_credentials(&user, &pass))?,
                )),
                None => None,
            };
            Ok((key_hash, user_hashes))
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.into()))??;

    let id = crate::domain::new_id();
    let mut doc = new.doc;
    doc.insert("name".into(), Value::String(new.name.clone()));
    if let Some(realm) = &new.realm {
        doc.insert("realm".into(), Value::String(realm.clone()));
    }
    let account = Account {
        id: id.clone(),
        name: new.name,
        realm: new.realm,
        parent_id: new.parent,
        tree: new.tree,
        superduper: false,
        doc,
        created: crate::domain::now_gregorian(),
    };
    let user = match (&new.admin, user_hashes) {
        (Some((username, _)), Some((md5_hash, sha1_hash))) => Some(User {
            id: crate::domain::new_id(),
            account_id: id,
            username: username.to_lowercase(),
            first_name: Some(username.clone()),
            // The users schema requires both names: without one the user document could not be
            // saved again (a POST to it, an import of an export).
            last_name: Some("Admin".into()),
            enabled: true,
            md5_hash,
            sha1_hash,
            profile: admin_profile(username),
        }),
        _ => None,
    };
    let prefix: String = api_key.chars().take(API_KEY_PREFIX_LEN).collect();
    let account = store
        .create_account(&account, Some((&prefix, &key_hash)), user.as_ref())
        .await?;
    Ok(CreatedAccount {
        account,
        api_key,
        user_id: user.map(|u| u.id),
    })
}

/// The public fields of an account's first user, as the users schema completes them (the
/// document is then what a `PUT /users` of the same fields would have stored, so it saves and
/// imports again unchanged).
fn admin_profile(username: &str) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("username".into(), Value::String(username.to_lowercase()));
    doc.insert("first_name".into(), Value::String(username.to_string()));
    doc.insert("last_name".into(), Value::String("Admin".into()));
    doc.insert("enabled".into(), Value::Bool(true));
    doc.insert("priv_level".into(), Value::String("admin".into()));
    let mut value = Value::Object(doc.clone());
    static SCHEMAS: std::sync::OnceLock<Option<crate::schema::SchemaSet>> =
        std::sync::OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| crate::schema::SchemaSet::embedded().ok());
    match schemas.as_ref().map(|s| s.validate("users", &mut value)) {
        Some(Ok(())) => match value {
            Value::Object(validated) => validated,
            _ => doc,
        },
        _ => doc,
    }
}
