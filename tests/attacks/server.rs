//! A real `callflowd serve` process on loopback, for attacks that need a whole process: its
//! descriptor limit, its memory, its signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const PASSWORD: &str = "attack-admin-password";

/// Which store the attacked server uses: a SQLite file in `dir`, or a fresh PostgreSQL
/// database when `CALLFLOWD_TEST_POSTGRES_URL` is set.
pub fn database_url(dir: &std::path::Path) -> String {
    match std::env::var("CALLFLOWD_TEST_POSTGRES_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let url = admin_url.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(callflowd::store::PgStore::scratch_database(&url))
                    .expect("scratch PostgreSQL database")
            })
            .join()
            .expect("scratch thread")
        }
        _ => format!("sqlite://{}", dir.join("attack.db").display()),
    }
}

pub fn backend() -> &'static str {
    match std::env::var("CALLFLOWD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => "postgresql",
        _ => "sqlite",
    }
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub database_url: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub account: String,
    pub token: String,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Default)]
pub struct Options {
    /// Extra `serve` arguments.
    pub args: Vec<String>,
    /// Open-files limit (soft and hard) for the server process.
    pub nofile: Option<u64>,
    pub database_url: Option<String>,
}

impl Server {
    pub async fn start(options: Options) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = options
            .database_url
            .clone()
            .unwrap_or_else(|| database_url(dir.path()));
        // CALLFLOWD_TEST_BIN attacks another build (e.g. target/release/callflowd).
        let bin = std::env::var_os("CALLFLOWD_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_callflowd")));
        let mut command = match options.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &database_url,
            ])
            .args(&options.args)
            .env("CALLFLOWD_ADMIN_PASSWORD", PASSWORD)
            // Floods from one account are what these tests are about; the request rate limit
            // is tested on its own (a test passes `--account-bucket-size` to turn it on).
            .env("CALLFLOWD_ACCOUNT_BUCKET_SIZE", "0")
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(
                std::env::var("CALLFLOWD_TEST_SERVER_ENV")
                    .ok()
                    .and_then(|v| {
                        v.split_once('=')
                            .map(|(k, v)| vec![(k.to_string(), v.to_string())])
                    })
                    .unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start callflowd");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("addr=").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        if let Ok(a) = addr.parse::<SocketAddr>() {
                            let _ = addr_tx.send(a);
                        }
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", log.lock().unwrap()));
        let mut server = Server {
            child,
            addr,
            database_url,
            log,
            account: String::new(),
            token: String::new(),
            _dir: Some(dir),
        };
        let login = server.login(None).await;
        assert_eq!(login.0, 201, "admin login: {}", login.1);
        server.account = login.1["data"]["account_id"].as_str().unwrap().to_string();
        server.token = login.1["auth_token"].as_str().unwrap().to_string();
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin login; `forwarded_for` sets `X-Forwarded-For` (the server trusts loopback
    /// as a proxy, as Kazoo does, so this stands for a client behind a reverse proxy).
    pub async fn login(&self, forwarded_for: Option<&str>) -> (u16, Value) {
        self.login_with("admin", PASSWORD, forwarded_for).await
    }

    pub async fn login_with(
        &self,
        user: &str,
        password: &str,
        forwarded_for: Option<&str>,
    ) -> (u16, Value) {
        let creds = callflowd::auth::md5_credentials(user, password);
        let mut req = client()
            .put(self.url("/v2/user_auth"))
            .header("content-type", "application/json")
            .body(
                json!({"data": {"credentials": creds, "account_realm": "localhost"}}).to_string(),
            );
        if let Some(ip) = forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        let resp = req.send().await.expect("login request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; `None` if it is still alive after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// p50, p99 and max of a set of durations, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99), at(1.0))
}
