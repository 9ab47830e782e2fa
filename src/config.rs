//! Command line and environment: one clap tree. Every option also reads a `CALLFLOWD_*`
//! variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

/// A secret read from the command line or the environment; it never prints (`Debug` shows
/// `[REDACTED]`).
fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// A database URL fit for logs and `Debug`: the password replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL we can parse: hide anything between `://` and `@`.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &url[..scheme + 3], &url[at..])
            }
            _ => url.to_string(),
        },
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "callflowd",
    version,
    about = "Kazoo-compatible callflows API server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API.
    Serve(Box<ServeArgs>),
    /// Create an account with an admin user and an API key; prints one JSON object.
    CreateAccount(CreateAccountArgs),
    /// Show which callflow a dialled number reaches in an account, and why (JSON).
    Lookup(LookupArgs),
    /// Simulate what a call would do, step by step (stores nothing). Prints the same data as
    /// `PUT /v2/accounts/{A}/simulations`, as JSON or as a tree.
    Simulate(SimulateArgs),
    /// Lint one callflow (stored, or a draft file) or the whole account; exit code 1 when a
    /// finding is an error.
    Lint(LintArgs),
    /// Run the account's saved call tests (all, or those named); exit code 1 when one fails.
    Test(TestArgs),
    /// Import documents from callflowd's NDJSON export or Kazoo's CouchDB dumps
    /// (`_all_docs?include_docs=true`); exit code 1 when a document was refused.
    Import(ImportArgs),
    /// Export documents as NDJSON (one document per line, accounts first) to stdout.
    Export(ExportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Dump files, read in order (`-` reads stdin).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Import every document into this account (id), whatever account the dump names.
    #[arg(long, conflicts_with = "create_accounts")]
    pub account: Option<String>,
    /// Create the accounts the dump describes (its `account` documents) when missing; without
    /// it, each document goes to the account it names, which must exist.
    #[arg(long)]
    pub create_accounts: bool,
    /// Check everything and report what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A document whose id is taken by a different stored document: refused (`fail`), left
    /// alone (`skip`), or saved as a new revision of it (`replace`). Equal documents are
    /// always left alone.
    #[arg(long, value_enum, default_value_t = crate::transfer::import::OnConflict::Fail)]
    pub on_conflict: crate::transfer::import::OnConflict,
    /// Write one NDJSON line per document (id, action, Kazoo's error) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Commit message recorded with every revision written.
    #[arg(long, default_value = "import")]
    pub message: String,
    /// Documents per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// Most patterns an account may hold (as `serve --max-patterns-per-account`).
    #[arg(
        long,
        env = "CALLFLOWD_MAX_PATTERNS_PER_ACCOUNT",
        default_value_t = 2_000
    )]
    pub max_patterns_per_account: usize,
    /// Progress display: a bar on a terminal, plain lines otherwise (`auto`), or none.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// How a long command shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    Auto,
    Bar,
    Plain,
    None,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Only this account (id); all accounts when not given.
    #[arg(long)]
    pub account: Option<String>,
    /// Only these document types (`callflow`, `device`, `user`, `vmbox`, ...); repeat for
    /// several.
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Soft-deleted documents too (imported back as deleted).
    #[arg(long)]
    pub include_deleted: bool,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LintArgs {
    /// Account id (32 characters).
    #[arg(long)]
    pub account: String,
    /// A stored callflow to lint (default: every callflow of the account).
    #[arg(conflicts_with = "callflow")]
    pub callflow_id: Option<String>,
    /// A draft callflow to lint (a JSON file: the document, or an envelope around it).
    #[arg(long)]
    pub callflow: Option<PathBuf>,
    /// Print the JSON report instead of one line per finding.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Account id (32 characters).
    #[arg(long)]
    pub account: String,
    /// Test names (or ids) to run; all when none is given.
    pub names: Vec<String>,
    /// Print the JSON results instead of one line per test.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Account id (32 characters).
    #[arg(long)]
    pub account: String,
    /// The dialled number.
    #[arg(long)]
    pub number: String,
    /// The caller: a caller-id number, or a JSON object
    /// (`{"id_number":..,"id_name":..,"device_id":..,"user_id":..}`).
    #[arg(long)]
    pub caller: Option<String>,
    /// When the call happens (RFC 3339; default: now).
    #[arg(long)]
    pub at: Option<String>,
    /// The event script: a JSON array, or a file holding one.
    #[arg(long)]
    pub events: Option<String>,
    /// Run this draft callflow (a JSON file) instead of looking the number up.
    #[arg(long, conflicts_with = "callflow_id")]
    pub callflow: Option<PathBuf>,
    /// Run this stored callflow instead of looking the number up.
    #[arg(long)]
    pub callflow_id: Option<String>,
    /// Run the saved draft of the callflow (`--callflow-id`, or the one the number reaches,
    /// when it has a draft) instead of its live version.
    #[arg(long, conflicts_with = "callflow")]
    pub draft: bool,
    /// Inline documents winning over stored ones (`{"menus":{"ID":{..}}}`): JSON, or a file.
    #[arg(long)]
    pub documents: Option<String>,
    /// Steps after which the simulation stops.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Print the path as a tree (the default on a terminal).
    #[arg(long, conflicts_with = "json")]
    pub tree: bool,
    /// Print JSON (the default when not on a terminal).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LookupArgs {
    /// Account id (32 characters).
    #[arg(long)]
    pub account: String,
    /// The dialled number, as the call delivers it.
    pub number: String,
    /// Route as an inbound carrier call would: the `no_match` callflow is not used.
    #[arg(long)]
    pub no_no_match: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Clone, Args)]
pub struct StoreArgs {
    /// Where data lives: sqlite://PATH (created and migrated automatically) or postgres://...
    #[arg(
        long,
        env = "CALLFLOWD_DATABASE_URL",
        default_value = "sqlite://callflowd.db"
    )]
    pub database_url: String,
}

impl std::fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreArgs")
            .field("database_url", &redacted_url(&self.database_url))
            .finish()
    }
}

impl StoreArgs {
    /// The database URL for logs and error messages (no password).
    pub fn redacted(&self) -> String {
        redacted_url(&self.database_url)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CALLFLOWD_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Directory of Kazoo-format schema files that add to or replace the built-in schemas.
    #[arg(long, env = "CALLFLOWD_SCHEMAS_DIR")]
    pub schemas_dir: Option<PathBuf>,
    /// Lifetime of auth tokens, in seconds.
    #[arg(long, env = "CALLFLOWD_TOKEN_TTL", default_value_t = 3600)]
    pub token_ttl: u64,
    /// Largest request body accepted, in bytes (answered 413 past it).
    #[arg(long, env = "CALLFLOWD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Bytes of an oversized body read and thrown away before the 413 is sent, so a client
    /// that writes its whole body before reading receives the answer instead of a reset
    /// connection (default: 8 x --max-body-bytes). A larger body is cut off there.
    #[arg(long, env = "CALLFLOWD_MAX_BODY_DRAIN_BYTES")]
    pub max_body_drain_bytes: Option<usize>,
    /// Most nodes in one callflow's `flow` (the root and every child, at any depth).
    #[arg(long, env = "CALLFLOWD_MAX_FLOW_NODES", default_value_t = 1_000)]
    pub max_flow_nodes: usize,
    /// Longest pattern (characters) a callflow may hold.
    #[arg(long, env = "CALLFLOWD_MAX_PATTERN_LENGTH", default_value_t = 1_024)]
    pub max_pattern_length: usize,
    /// Largest dump `PUT /v2/accounts/{A}/imports` accepts, in bytes (streamed to a temporary
    /// file, never held in memory).
    #[arg(long, env = "CALLFLOWD_MAX_IMPORT_BYTES", default_value_t = 4 * 1024 * 1024 * 1024)]
    pub max_import_bytes: u64,
    /// The secret the SIP switch (Kamailio) sends as `Authorization: Bearer ...` on
    /// `/v2/sip/route` and `/v2/sip/credentials`; without it those endpoints answer 404.
    /// Never logged.
    #[arg(long, env = "CALLFLOWD_SIP_SECRET", hide_env_values = true)]
    pub sip_secret: Option<String>,
    /// Where calls go when a callflow node needs media (menu, voicemail, play...): a SIP URI
    /// of a media server (e.g. `sip:media@10.0.0.5:5080`). Without it such calls are
    /// answered 480.
    #[arg(long, env = "CALLFLOWD_SIP_MEDIA_URI")]
    pub sip_media_uri: Option<String>,
    /// Largest `page_size` served; larger requests get pages of this size (with
    /// `next_start_key`).
    #[arg(long, env = "CALLFLOWD_MAX_PAGE_SIZE", default_value_t = 1_000)]
    pub max_page_size: usize,
    /// Most rows a `paginate=false` listing answers; past it, the reply ends with
    /// `next_start_key` like a page.
    #[arg(long, env = "CALLFLOWD_MAX_LISTING_ROWS", default_value_t = 10_000)]
    pub max_listing_rows: usize,
    /// Time allowed to produce a response once the request has been read (answered 503
    /// `request_timeout`; a write already under way still completes).
    #[arg(long, env = "CALLFLOWD_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Request token bucket per account (per client address without a valid token), Kazoo's
    /// crossbar shape: bucket size (0: no limit)...
    #[arg(long, env = "CALLFLOWD_ACCOUNT_BUCKET_SIZE", default_value_t = 100)]
    pub account_bucket_size: u32,
    /// ...tokens added back per second...
    #[arg(long, env = "CALLFLOWD_ACCOUNT_BUCKET_RATE", default_value_t = 10)]
    pub account_bucket_rate: u32,
    /// ...and what one request costs (Kazoo's `token_costs`; 0: no limit).
    #[arg(long, env = "CALLFLOWD_REQUEST_TOKEN_COST", default_value_t = 1)]
    pub request_token_cost: u32,
    /// Serve `/metrics` on this address instead of the API listener (where it then answers
    /// 404).
    #[arg(long, env = "CALLFLOWD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Deepest JSON nesting accepted in a request body.
    #[arg(long, env = "CALLFLOWD_MAX_JSON_DEPTH", default_value_t = 64)]
    pub max_json_depth: usize,
    /// Memory budget for cached routing snapshots, in bytes; least used accounts are evicted.
    #[arg(long, env = "CALLFLOWD_ROUTE_CACHE_BYTES", default_value_t = crate::routing::cache::DEFAULT_BUDGET_BYTES)]
    pub route_cache_bytes: u64,
    /// Memory budget for documents, accounts and users read by id, in bytes (0: no cache).
    /// Only a store this process alone writes (SQLite) is cached; see docs/deployment.md.
    #[arg(long, env = "CALLFLOWD_DOCUMENT_CACHE_BYTES", default_value_t = crate::store::cached::DEFAULT_BUDGET_BYTES)]
    pub document_cache_bytes: u64,
    /// Most client connections open at once (lowered to fit the open-files limit). When full,
    /// a new connection replaces the oldest one that is not serving a request.
    #[arg(long, env = "CALLFLOWD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Time allowed for a request's head once its first byte arrived (slow clients are cut).
    #[arg(long, env = "CALLFLOWD_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Time a keep-alive connection may stay open with no request in progress.
    #[arg(long, env = "CALLFLOWD_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Time allowed for reading a request body (answered 408 past it).
    #[arg(long, env = "CALLFLOWD_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// On SIGTERM/SIGINT: time in-flight requests get to finish before the process exits.
    #[arg(long, env = "CALLFLOWD_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Threads that check passwords and API keys (argon2, 19 MiB each); default: one per core.
    /// Checks beyond what they can queue are answered 429.
    #[arg(long, env = "CALLFLOWD_HASH_WORKERS")]
    pub hash_workers: Option<usize>,
    /// Login token bucket per client address and account, Kazoo's shape: bucket size...
    #[arg(long, env = "CALLFLOWD_LOGIN_BUCKET_SIZE", default_value_t = 100)]
    pub login_bucket_size: u32,
    /// ...tokens added back per second...
    #[arg(long, env = "CALLFLOWD_LOGIN_BUCKET_RATE", default_value_t = 10)]
    pub login_bucket_rate: u32,
    /// ...and what one `user_auth`/`api_auth` attempt costs (Kazoo's `user_auth_tokens`).
    #[arg(long, env = "CALLFLOWD_LOGIN_COST", default_value_t = 35)]
    pub login_cost: u32,
    /// Failed logins allowed per client address before it must slow down (refilled at one
    /// per second), whatever account it tries.
    #[arg(
        long,
        env = "CALLFLOWD_LOGIN_FAILURES_PER_ADDRESS",
        default_value_t = 30
    )]
    pub login_failures_per_address: u32,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the real client (Kazoo's
    /// default trusts the local host). Comma-separated.
    #[arg(
        long,
        env = "CALLFLOWD_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    pub trusted_proxies: Vec<IpAddr>,
    /// Most numbers one callflow may hold.
    #[arg(
        long,
        env = "CALLFLOWD_MAX_NUMBERS_PER_CALLFLOW",
        default_value_t = 10_000
    )]
    pub max_numbers_per_callflow: usize,
    /// Most patterns one callflow may hold.
    #[arg(
        long,
        env = "CALLFLOWD_MAX_PATTERNS_PER_CALLFLOW",
        default_value_t = 1_000
    )]
    pub max_patterns_per_callflow: usize,
    /// Most patterns one account may hold across its callflows.
    #[arg(
        long,
        env = "CALLFLOWD_MAX_PATTERNS_PER_ACCOUNT",
        default_value_t = 2_000
    )]
    pub max_patterns_per_account: usize,
    /// Revisions kept per document: older ones are removed as new ones are written
    /// (0: every revision is kept).
    #[arg(long, env = "CALLFLOWD_REVISIONS_KEEP", default_value_t = 0)]
    pub revisions_keep: u64,
    /// Days revisions are kept: older ones are removed every hour, except each document's
    /// latest (0: forever).
    #[arg(long, env = "CALLFLOWD_REVISIONS_KEEP_DAYS", default_value_t = 0)]
    pub revisions_keep_days: u64,
    /// Benchmarks only: record writes as before history existed (revision and change rows, no
    /// feed position, nobody and no message), to measure what history costs. The feed and the
    /// audit then show nothing new.
    #[arg(long, hide = true)]
    pub bench_history_as_before: bool,
    /// Password of the admin user created on first start (default: generated and printed).
    #[arg(long, env = "CALLFLOWD_ADMIN_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub admin_password: Option<SecretString>,
}

impl ServeArgs {
    /// The command line's defaults, on `127.0.0.1:0` with `database_url` (for embedding the
    /// server: tests, benchmarks). Defaults come from the same definitions as `--help`'s.
    pub fn ephemeral(database_url: &str) -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from([
            "callflowd",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])?;
        match Cli::from_arg_matches(&matches)?.command {
            Command::Serve(args) => Ok(*args),
            _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CreateAccountArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub realm: String,
    #[arg(long)]
    pub username: String,
    #[arg(long, value_parser = secret)]
    pub password: SecretString,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_parsed_command_line_shows_no_secret() {
        let cli = Cli::try_parse_from([
            "callflowd",
            "serve",
            "--database-url",
            "postgres://callflowd:hunter2@db.example:5432/callflowd",
            "--admin-password",
            "s3cret-admin",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret-admin"), "{shown}");
        assert!(shown.contains("callflowd:***@db.example"), "{shown}");
        let cli = Cli::try_parse_from([
            "callflowd",
            "create-account",
            "--name",
            "a",
            "--realm",
            "a.example",
            "--username",
            "u",
            "--password",
            "pw-secret",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("pw-secret"));
        assert_eq!(
            redacted_url("sqlite://callflowd.db"),
            "sqlite://callflowd.db"
        );
        assert_eq!(redacted_url("weird://u:p@[bad"), "weird://***@[bad");
    }
}
