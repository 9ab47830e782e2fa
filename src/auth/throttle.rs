//! Login throttling with Kazoo's token-bucket shape.
//!
//! Two buckets guard `user_auth` and `api_auth`:
//! - one per client address and login target (realm or account name; Kazoo keys its buckets by
//!   `<client ip>/<account>`): every attempt costs `cost` tokens (Kazoo's `user_auth_tokens`,
//!   35), the bucket holds `size` (100) and refills `rate` (10) per second;
//! - one per client address: every *failed* attempt costs one token, the bucket holds
//!   `failures_per_address` and refills one per second, so spraying many accounts from one
//!   address is slowed as well.
//!
//! An empty bucket answers 429 with `Retry-After` before any password is checked. A flood
//! against one account from one address therefore does not lock out the account's users
//! elsewhere. The table of buckets is bounded: past `MAX_KEYS`, buckets that have refilled
//! completely (they hold no information) are dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most buckets kept before full ones are pruned.
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

#[derive(Debug)]
struct Buckets {
    map: HashMap<String, Bucket>,
    size: f64,
    rate: f64,
}

impl Buckets {
    fn new(size: u32, rate: u32) -> Self {
        Self {
            map: HashMap::new(),
            size: f64::from(size.max(1)),
            rate: f64::from(rate.max(1)),
        }
    }

    /// Takes `cost` tokens, or says how many seconds until they are there.
    fn take(&mut self, key: &str, cost: f64, now: Instant) -> Result<(), u64> {
        if self.map.len() >= MAX_KEYS && !self.map.contains_key(key) {
            let (size, rate) = (self.size, self.rate);
            self.map
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < size);
        }
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
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err(((cost - bucket.tokens) / rate).ceil() as u64)
        }
    }

    fn empty(&mut self, key: &str, now: Instant) -> Option<u64> {
        let bucket = self.map.get_mut(key)?;
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rate)
            .min(self.size);
        bucket.at = now;
        (bucket.tokens < 1.0).then(|| ((1.0 - bucket.tokens) / self.rate).ceil() as u64)
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

    /// Charges an attempt on `target` from `ip`; `Err(seconds)` when it must wait.
    pub fn attempt(&self, ip: IpAddr, target: &str) -> Result<(), u64> {
        let now = Instant::now();
        if let Some(wait) = lock(&self.failures).empty(&ip.to_string(), now) {
            return Err(wait);
        }
        lock(&self.attempts).take(&format!("{ip}/{target}"), self.cost, now)
    }

    /// Records a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let _ = lock(&self.failures).take(&ip.to_string(), 1.0, Instant::now());
    }
}

fn lock(m: &Mutex<Buckets>) -> std::sync::MutexGuard<'_, Buckets> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(t.attempt(ip, "acme").is_ok());
        assert!(t.attempt(ip, "acme").is_ok());
        let wait = t.attempt(ip, "acme").unwrap_err();
        assert!((1..=4).contains(&wait), "{wait}");
        // Another account, or another address, has its own bucket.
        assert!(t.attempt(ip, "other").is_ok());
        assert!(t.attempt("192.0.2.2".parse().unwrap(), "acme").is_ok());
    }

    #[test]
    fn repeated_failures_slow_an_address_down_whatever_it_targets() {
        let t = throttle();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for i in 0..3 {
            assert!(t.attempt(ip, &format!("a{i}")).is_ok());
            t.failed(ip);
        }
        assert!(t.attempt(ip, "fresh").is_err());
        assert!(t.attempt("192.0.2.10".parse().unwrap(), "fresh").is_ok());
    }
}
