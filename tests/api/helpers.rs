//! The test harness: a real router over a real store (a temporary SQLite file, or a fresh
//! PostgreSQL database when `CALLFLOWD_TEST_POSTGRES_URL` is set), driven through
//! `tower::ServiceExt::oneshot`.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use callflowd::accounts::{new_account, NewAccount};
use callflowd::api::{self, AppState};
use callflowd::config::ServeArgs;
use callflowd::startup::{bootstrap_admin, build_state};

pub const ADMIN_PASSWORD: &str = "admin-secret";

/// Which backend a test run uses.
pub fn database_url(dir: &tempfile::TempDir) -> String {
    match std::env::var("CALLFLOWD_TEST_POSTGRES_URL") {
        Ok(admin_url) if !admin_url.is_empty() => futures_scratch_db(&admin_url),
        _ => format!("sqlite://{}", dir.path().join("test.db").display()),
    }
}

fn futures_scratch_db(admin_url: &str) -> String {
    let url = admin_url.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(callflowd::store::PgStore::scratch_database(&url))
            .expect("create a scratch PostgreSQL database")
    })
    .join()
    .expect("scratch thread")
}

pub fn serve_args(database_url: String) -> ServeArgs {
    let mut args = ServeArgs::ephemeral(&database_url).expect("default serve arguments");
    args.admin_password = Some(ADMIN_PASSWORD.into());
    // Tests make thousands of requests from one account; the rate limit has its own tests
    // (tests/api/limits.rs), which switch it back on.
    args.account_bucket_size = 0;
    args
}

pub struct TestApp {
    pub router: Router,
    pub database_url: String,
    pub state: AppState,
    pub admin_account: String,
    pub admin_token: String,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// `data` of the envelope.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn reference_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/kazoo");
    dir.is_dir().then_some(dir)
}

/// The reference directory, or `None` with a visible notice naming what is skipped; a panic
/// when CI requires it (`CALLFLOWD_REQUIRE_REFERENCE=1`).
pub fn reference_or_skip(what: &str) -> Option<PathBuf> {
    match reference_dir() {
        Some(dir) => Some(dir),
        None if std::env::var("CALLFLOWD_REQUIRE_REFERENCE").as_deref() == Ok("1") => {
            panic!("CALLFLOWD_REQUIRE_REFERENCE=1 but ../shared/reference/kazoo is missing")
        }
        None => {
            println!("NOTICE: ../shared/reference/kazoo not found; {what} skipped");
            None
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(customise: impl FnOnce(&mut ServeArgs)) -> Self {
        Self::spawn_with_store(customise, |url| async move {
            callflowd::store::open(&url).await.expect("open store")
        })
        .await
    }

    /// As [`TestApp::spawn_with`], with the store opened by `open` from the database URL.
    pub async fn spawn_with_store<F, Fut>(customise: impl FnOnce(&mut ServeArgs), open: F) -> Self
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = callflowd::store::DynStore>,
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = serve_args(database_url(&dir));
        customise(&mut args);
        let store = open(args.store.database_url.clone()).await;
        let state = build_state(store, &args).await.expect("state");
        let boot = bootstrap_admin(&state.store, args.admin_password.clone())
            .await
            .expect("bootstrap")
            .expect("fresh store gets an admin");
        let router = api::router(state.clone());
        let mut app = Self {
            router,
            database_url: args.store.database_url.clone(),
            state,
            admin_account: boot.account_id,
            admin_token: String::new(),
            _dir: dir,
        };
        app.admin_token = app.login("admin", "localhost", ADMIN_PASSWORD).await;
        app
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        send_to(&self.router, req).await
    }

    /// A JSON request; `body` is sent as the whole envelope.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            builder = builder.header("X-Auth-Token", t);
        }
        let body = match body {
            Some(b) => {
                builder = builder.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).expect("request")).await
    }

    /// Login with user credentials; panics unless it works.
    pub async fn login(&self, user: &str, realm: &str, password: &str) -> String {
        let creds = callflowd::auth::md5_credentials(user, password);
        let r = self
            .call(
                Method::PUT,
                "/v2/user_auth",
                None,
                Some(json!({"data": {"credentials": creds, "account_realm": realm}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "login failed: {}", r.text);
        r.body["auth_token"].as_str().expect("token").to_string()
    }

    /// A new top-level account with an admin user, and a token for it.
    pub async fn top_level_account(&self, name: &str) -> (String, String) {
        let realm = format!("{name}.example.com");
        let created = new_account(
            self.state.store.as_ref(),
            NewAccount {
                name: name.into(),
                realm: Some(realm.clone()),
                parent: None,
                tree: vec![],
                doc: Default::default(),
                admin: Some(("owner".into(), "pw-".to_string() + name)),
            },
        )
        .await
        .expect("account");
        let token = self.login("owner", &realm, &format!("pw-{name}")).await;
        (created.account.id, token)
    }

    pub async fn api_login(&self, api_key: &str) -> Resp {
        self.call(
            Method::PUT,
            "/v2/api_auth",
            None,
            Some(json!({"data": {"api_key": api_key}})),
        )
        .await
    }

    pub fn callflows(account: &str) -> String {
        format!("/v2/accounts/{account}/callflows")
    }

    pub async fn create(&self, token: &str, account: &str, data: Value) -> Resp {
        self.call(
            Method::PUT,
            &Self::callflows(account),
            Some(token),
            Some(json!({ "data": data })),
        )
        .await
    }

    pub async fn fetch(&self, token: &str, account: &str, id: &str) -> Resp {
        self.call(
            Method::GET,
            &format!("{}/{id}", Self::callflows(account)),
            Some(token),
            None,
        )
        .await
    }

    pub async fn list(&self, token: &str, account: &str, query: &str) -> Resp {
        self.call(
            Method::GET,
            &format!("{}{query}", Self::callflows(account)),
            Some(token),
            None,
        )
        .await
    }

    /// Create and return the new id, asserting 201.
    pub async fn create_ok(&self, account: &str, data: Value) -> String {
        let r = self.create(&self.admin_token, account, data).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.data()["id"].as_str().expect("id").to_string()
    }
}

/// Saves a document of `segment` (`users`, `menus`, `callflows`, ...) in the admin account and
/// answers its id; anything but 201 fails the test.
pub async fn save(app: &TestApp, segment: &str, data: Value) -> String {
    let r = app
        .call(
            Method::PUT,
            &format!("/v2/accounts/{}/{segment}", app.admin_account),
            Some(&app.admin_token),
            Some(json!({ "data": data })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{segment}: {}", r.text);
    r.data()["id"].as_str().expect("id").to_string()
}

/// Sends `req` through `router` and reads the whole answer.
pub async fn send_to(router: &Router, req: Request<Body>) -> Resp {
    let response = router
        .clone()
        .oneshot(req)
        .await
        .expect("router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}
