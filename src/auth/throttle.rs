//! Kazoo's token buckets: login throttling and the per-account request rate.
//!
//! [`RequestLimiter`] charges every API request (Kazoo's crossbar `token_costs`, one token by
//! default) to a bucket of `size` tokens refilled `rate` per second: the authenticated
//! account's, or the client address's when the request carries no valid token. An empty
//! bucket answers 429 with `Retry-After`; every envelope then carries `tokens`
//! (`{"consumed": N, "remaining": M}`) as Kazoo's does.
//!
//! Two buckets guard `user_auth`, `api_auth` and Basic credentials:
//! - one per client and login target (each realm, account name or account id the request
//!   names; Kazoo keys its buckets by `<client ip>/<account>`): every attempt costs `cost`
//!   tokens (Kazoo's `user_auth_tokens`, 35), the bucket holds `size` (100) and refills `rate`
//!   (10) per second;
//! - one per client: every *failed* attempt costs one token (taken when the attempt starts, so
//!   a burst of concurrent guesses cannot all pass before the first failure counts; given back
//!   when the attempt succeeds). The bucket holds `failures_per_address` and refills one per
//!   second, so spraying many accounts from one client is slowed as well.
//!
//! A client is an IPv4 address or an IPv6 /64 (what one subscriber usually holds). An empty
//! bucket answers 429 with `Retry-After` before any password is checked, so a flood against one
//! account from one client does not lock out the account's users elsewhere. The table of
//! buckets is bounded: past `MAX_KEYS`, buckets that have refilled completely are dropped, and
//! if that is not enough (a spray of addresses), all of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most buckets kept.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    pub size: u32,
    pub rate: u32,
    pub cost: u32,
    pub failures_per_address: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How often buckets that have refilled completely (idle ones) are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Buckets {
    map: HashMap<String, Bucket>,
    size: f64,
    rate: f64,
    pruned: Instant,
}

impl Buckets {
    fn new(size: u32, rate: u32) -> Self {
        Self {
            map: HashMap::new(),
            size: f64::from(size.max(1)),
            rate: f64::from(rate.max(1)),
            pruned: Instant::now(),
        }
    }

    /// Drops the buckets that are full again (a fresh one would be the same).
    fn prune(&mut self, now: Instant) {
        let (size, rate) = (self.size, self.rate);
        self.map
            .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < size);
        self.pruned = now;
    }

    fn make_room(&mut self, key: &str, now: Instant) {
        if now.duration_since(self.pruned) >= PRUNE_EVERY {
            self.prune(now);
        }
        if self.map.len() < MAX_KEYS || self.map.contains_key(key) {
            return;
        }
        self.prune(now);
        if self.map.len() >= MAX_KEYS / 2 {
            self.map.clear();
        }
    }

    /// Takes `cost` tokens when they are there: `Ok(tokens left)`, or `Err(seconds)` until
    /// they are (nothing taken).
    fn consume(&mut self, key: &str, cost: f64, now: Instant) -> Result<f64, u64> {
        self.check(key, cost, now)?;
        self.take(key, cost);
        Ok(self.map.get(key).map_or(self.size, |b| b.tokens))
    }

    /// Tokens in `key`'s bucket now.
    fn remaining(&self, key: &str, now: Instant) -> f64 {
        self.map.get(key).map_or(self.size, |b| {
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.size)
        })
    }

    /// Whether `cost` tokens are there, or how many seconds until they are (nothing taken).
    fn check(&mut self, key: &str, cost: f64, now: Instant) -> Result<(), u64> {
        self.make_room(key, now);
        let (size, rate) = (self.size, self.rate);
        let bucket = self.map.entry(key.to_string()).or_insert(Bucket {
            tokens: size,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(size);
        bucket.at = now;
        let cost = cost.min(size);
        if bucket.tokens >= cost {
            Ok(())
        } else {
            Err(((cost - bucket.tokens) / rate).ceil() as u64)
        }
    }

    /// Takes `cost` tokens (after a successful [`Buckets::check`]).
    fn take(&mut self, key: &str, cost: f64) {
        if let Some(bucket) = self.map.get_mut(key) {
            bucket.tokens -= cost.min(self.size);
        }
    }

    fn give_back(&mut self, key: &str, tokens: f64) {
        if let Some(bucket) = self.map.get_mut(key) {
            bucket.tokens = (bucket.tokens + tokens).min(self.size);
        }
    }
}

#[derive(Debug)]
pub struct LoginThrottle {
    cost: f64,
    attempts: Mutex<Buckets>,
    failures: Mutex<Buckets>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            cost: f64::from(config.cost),
            attempts: Mutex::new(Buckets::new(config.size, config.rate)),
            failures: Mutex::new(Buckets::new(config.failures_per_address, 1)),
        }
    }

    /// Charges an attempt on each of `targets` from `ip` and sets aside one failure token;
    /// `Err(seconds)` when it must wait (then nothing is charged).
    pub fn attempt(&self, ip: IpAddr, targets: &[&str]) -> Result<(), u64> {
        let now = Instant::now();
        let client = client_key(ip);
        let keys: Vec<String> = targets.iter().map(|t| format!("{client}/{t}")).collect();
        let mut failures = lock(&self.failures);
        let mut attempts = lock(&self.attempts);
        failures.check(&client, 1.0, now)?;
        for key in &keys {
            attempts.check(key, self.cost, now)?;
        }
        failures.take(&client, 1.0);
        for key in &keys {
            attempts.take(key, self.cost);
        }
        Ok(())
    }

    /// The attempt succeeded: its failure token goes back.
    pub fn succeeded(&self, ip: IpAddr) {
        lock(&self.failures).give_back(&client_key(ip), 1.0);
    }
}

/// What one request cost and what its bucket holds after it (Kazoo's envelope `tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub consumed: u64,
    pub remaining: u64,
}

/// A refused request: what it would have cost, what is left, and seconds until enough is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub tokens: Tokens,
    pub retry_after: u64,
}

/// The per-account (or per-client, unauthenticated) request rate (see the module docs).
#[derive(Debug)]
pub struct RequestLimiter {
    cost: u32,
    buckets: Mutex<Buckets>,
}

impl RequestLimiter {
    /// `None` when `size` or `cost` is 0 (the limit is off).
    pub fn new(size: u32, rate: u32, cost: u32) -> Option<Self> {
        (size > 0 && cost > 0).then(|| Self {
            cost,
            buckets: Mutex::new(Buckets::new(size, rate)),
        })
    }

    /// Charges one request to `account`'s bucket, or to the client's when there is no
    /// account (`None` client: an in-process caller, one shared bucket).
    pub fn charge(&self, account: Option<&str>, client: Option<IpAddr>) -> Result<Tokens, Refused> {
        let key = match (account, client) {
            (Some(account), _) => format!("account/{account}"),
            (None, Some(ip)) => format!("client/{}", client_key(ip)),
            (None, None) => "client/none".to_string(),
        };
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        let cost = f64::from(self.cost);
        match buckets.consume(&key, cost, now) {
            Ok(left) => Ok(Tokens {
                consumed: u64::from(self.cost),
                remaining: left.max(0.0).floor() as u64,
            }),
            Err(retry_after) => Err(Refused {
                tokens: Tokens {
                    consumed: u64::from(self.cost),
                    remaining: buckets.remaining(&key, now).max(0.0).floor() as u64,
                },
                retry_after,
            }),
        }
    }

    /// Buckets held now (idle ones are pruned every minute).
    pub fn len(&self) -> usize {
        lock(&self.buckets).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The throttled client: an IPv4 address, or an IPv6 /64.
fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn lock(m: &Mutex<Buckets>) -> std::sync::MutexGuard<'_, Buckets> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_limiter_is_kazoos_bucket_per_account_or_client() {
        let limiter = RequestLimiter::new(100, 10, 1).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for n in (0..100).rev() {
            let t = limiter.charge(Some("acct"), Some(ip)).unwrap();
            assert_eq!(t.consumed, 1);
            // Refill during the loop may add a token; never fewer than expected.
            assert!(t.remaining >= n, "{t:?} < {n}");
        }
        // Drain whatever refilled meanwhile, then it refuses.
        let refused = loop {
            match limiter.charge(Some("acct"), Some(ip)) {
                Ok(_) => continue,
                Err(r) => break r,
            }
        };
        assert_eq!(refused.retry_after, 1);
        assert_eq!(refused.tokens.remaining, 0);
        // The same account from another address shares the bucket; another account and an
        // unauthenticated client do not.
        assert!(limiter
            .charge(Some("acct"), Some("192.0.2.2".parse().unwrap()))
            .is_err());
        assert!(limiter.charge(Some("other"), Some(ip)).is_ok());
        assert!(limiter.charge(None, Some(ip)).is_ok());
        assert!(RequestLimiter::new(0, 10, 1).is_none());
        assert!(RequestLimiter::new(100, 10, 0).is_none());
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let mut b = Buckets::new(10, 1);
        let start = Instant::now();
        b.consume("a", 1.0, start).unwrap();
        b.consume("b", 5.0, start).unwrap();
        assert_eq!(b.map.len(), 2);
        // After 2 s, `a` is full again and goes; `b` (5 + 2 < 10) stays.
        b.prune(start + Duration::from_secs(2));
        assert_eq!(b.map.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            size: 100,
            rate: 10,
            cost: 35,
            failures_per_address: 3,
        })
    }

    #[test]
    fn kazoo_bucket_allows_two_attempts_then_waits() {
        let t = throttle();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.attempt(ip, &["acme"]).is_ok());
        t.succeeded(ip);
        assert!(t.attempt(ip, &["acme"]).is_ok());
        t.succeeded(ip);
        let wait = t.attempt(ip, &["acme"]).unwrap_err();
        assert!((1..=4).contains(&wait), "{wait}");
        // Another account, or another address, has its own bucket.
        assert!(t.attempt(ip, &["other"]).is_ok());
        assert!(t.attempt("192.0.2.2".parse().unwrap(), &["acme"]).is_ok());
        // Every selector a request names is charged: a fresh realm with a known name is not
        // a way around the name's bucket.
        assert!(t.attempt(ip, &["fresh-realm", "acme"]).is_err());
    }

    #[test]
    fn failures_are_counted_before_the_check_and_slow_a_client_down() {
        let t = throttle();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        // Three concurrent guesses use the three failure tokens before any fails.
        for i in 0..3 {
            assert!(t.attempt(ip, &[&format!("a{i}")]).is_ok());
        }
        assert!(t.attempt(ip, &["fresh"]).is_err());
        assert!(t.attempt("192.0.2.10".parse().unwrap(), &["fresh"]).is_ok());
        // An IPv6 /64 is one client; an IPv4-mapped address is its IPv4 address.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        for i in 0..3 {
            assert!(t.attempt(a, &[&format!("v{i}")]).is_ok());
        }
        assert!(t.attempt(b, &["v9"]).is_err());
        assert!(t
            .attempt("::ffff:192.0.2.9".parse().unwrap(), &["x"])
            .is_err());
    }
}
