//! Credentials and tokens.
//!
//! Owns: argon2 hashing of secrets (user credentials, API keys), the timing-safe checks, and
//! the signed, expiring auth tokens every node accepts (the signing key lives in the shared
//! store). Must not know about HTTP.

pub mod hasher;
pub mod throttle;

use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use md5::{Digest, Md5};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha1_smol::Sha1;

/// Length of the API key prefix stored in clear to find the account before the argon2 check.
pub const API_KEY_PREFIX_LEN: usize = 12;

/// argon2id hash (PHC string) of a secret.
pub fn hash_secret(secret: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::default();
    let params = argon.params().clone();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_buf)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = vec![0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
    with_argon2_memory(params.block_count(), |memory| {
        argon.hash_password_into_with_memory(secret.as_bytes(), salt_bytes, &mut out, memory)
    })
    .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let hash = PasswordHash {
        algorithm: argon2::Algorithm::default().ident(),
        version: Some(argon2::Version::default().into()),
        params: argon2::password_hash::ParamsString::try_from(&params)
            .map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(
            argon2::password_hash::Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?,
        ),
    };
    Ok(hash.to_string())
}

/// Runs `f` with `blocks` of this thread's reusable argon2 memory.
fn with_argon2_memory<T>(blocks: usize, f: impl FnOnce(&mut [argon2::Block]) -> T) -> T {
    ARGON2_BLOCKS.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        f(&mut memory[..blocks])
    })
}

/// Most argon2 memory a stored hash may ask for (KiB blocks): 64 MiB. A hash claiming more is a
/// mismatch rather than a way to exhaust memory.
const MAX_ARGON2_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// argon2's working memory, kept per thread and reused: allocating 19 MiB per check made the
    /// allocator keep tens of megabytes per check under a login flood (measured: +19 MB per
    /// failed login, unbounded), while a reused buffer bounds it at one per hashing thread.
    static ARGON2_BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Checks a secret against a PHC string; a malformed hash is simply a mismatch.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_ARGON2_BLOCKS {
        return false;
    }
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let computed = with_argon2_memory(blocks, |memory| {
        argon.hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, memory)
    });
    // `Output` compares in constant time.
    computed.is_ok()
        && argon2::password_hash::Output::new(&out)
            .map(|o| o == expected)
            .unwrap_or(false)
}

/// A hash to verify against when there is no candidate, so a miss costs as much as a hit.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_secret("callflowd-timing-equaliser").unwrap_or_default())
}

/// Kazoo's md5 credentials: hex md5 of `"<lower-cased username>:<password>"`.
pub fn md5_credentials(username: &str, password: &str) -> String {
    hex::encode(Md5::digest(
        format!("{}:{}", username.to_lowercase(), password).as_bytes(),
    ))
}

/// Kazoo's sha1 credentials (`"method": "sha"`).
pub fn sha1_credentials(username: &str, password: &str) -> String {
    Sha1::from(format!("{}:{}", username.to_lowercase(), password))
        .digest()
        .to_string()
}

/// Random lowercase hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new API key: 64 hex characters, as Kazoo's.
pub fn new_api_key() -> String {
    random_hex(32)
}

/// A readable random password for the bootstrap admin.
pub fn new_password() -> String {
    random_hex(12)
}

/// What a token says about its bearer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// `cb_user_auth` or `cb_api_auth`, as Kazoo names the methods.
    pub method: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    pub iat: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Signed by us, but past its expiry.
    Expired,
    /// Not a token we signed (garbage, another key, tampered).
    Invalid,
}

/// Signs and checks tokens with a key shared through the store, so any node accepts a token
/// any node issued, and it expires everywhere at the same second.
#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub ttl_secs: u64,
    /// Tokens whose signature was verified, with their claims: a token is checked once, and
    /// later only its expiry is (the signing key never changes while the process runs).
    verified: std::sync::Arc<quick_cache::sync::Cache<String, std::sync::Arc<Claims>>>,
}

/// Verified tokens kept (the least used go first).
const VERIFIED_TOKENS: usize = 16_384;

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    pub fn new(secret: &str, ttl_secs: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            ttl_secs,
            verified: std::sync::Arc::new(quick_cache::sync::Cache::new(VERIFIED_TOKENS)),
        }
    }

    pub fn issue(
        &self,
        account_id: &str,
        owner_id: Option<&str>,
        method: &str,
    ) -> anyhow::Result<(String, Claims)> {
        let now = unix_now();
        let claims = Claims {
            account_id: account_id.to_string(),
            owner_id: owner_id.map(str::to_string),
            method: method.to_string(),
            exp: now + self.ttl_secs,
            iat: now,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// The claims of a token whose signature is good and which has not expired.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.check(token).ok().map(std::sync::Arc::unwrap_or_clone)
    }

    /// Like [`TokenSigner::verify`], but says why a token is refused: Kazoo answers an expired
    /// token differently from a forged or garbled one.
    pub fn check(&self, token: &str) -> Result<std::sync::Arc<Claims>, TokenError> {
        let claims = match self.verified.get(token) {
            Some(claims) => claims,
            None => {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.leeway = 0;
                validation.validate_exp = false;
                let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
                    .map_err(|_| TokenError::Invalid)?
                    .claims;
                let claims = std::sync::Arc::new(claims);
                // Only tokens with a valid signature are kept; a forged one is checked again.
                self.verified.insert(token.to_string(), claims.clone());
                claims
            }
        };
        if claims.exp <= unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_token_is_remembered_but_its_expiry_and_forgeries_are_not() {
        let signer = TokenSigner::new("key", 3600);
        let (token, claims) = signer
            .issue("a".repeat(32).as_str(), None, "cb_user_auth")
            .unwrap();
        assert_eq!(
            signer.check(&token),
            Ok(std::sync::Arc::new(claims.clone()))
        );
        assert_eq!(
            signer.check(&token),
            Ok(std::sync::Arc::new(claims)),
            "from the verified cache"
        );
        // One character of the signature changed (not the last, whose low bits are padding).
        let mut forged: Vec<char> = token.chars().collect();
        let at = forged.len() - 10;
        forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
        let forged: String = forged.into_iter().collect();
        assert_eq!(signer.check(&forged), Err(TokenError::Invalid));
        let other = TokenSigner::new("another key", 3600);
        assert_eq!(other.check(&token), Err(TokenError::Invalid));
        // Expired: refused on its first check and again from the cache.
        let short = TokenSigner::new("key", 0);
        let (old, _) = short
            .issue("b".repeat(32).as_str(), None, "cb_user_auth")
            .unwrap();
        assert_eq!(short.check(&old), Err(TokenError::Expired));
        assert_eq!(short.check(&old), Err(TokenError::Expired));
    }

    #[test]
    fn credentials_match_kazoo_md5() {
        // md5("admin:secret")
        assert_eq!(
            md5_credentials("Admin", "secret"),
            hex::encode(Md5::digest(b"admin:secret"))
        );
    }

    #[test]
    fn secrets_verify_only_with_the_right_value() {
        let h = hash_secret("abc").unwrap();
        assert!(verify_secret("abc", &h));
        assert!(!verify_secret("abd", &h));
        assert!(!verify_secret("abc", "not-a-hash"));
    }

    #[test]
    fn hashes_interoperate_with_the_stock_argon2_implementation() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verify with the library's verifier...
        let ours = hash_secret("s3cret").unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret", &PasswordHash::new(&ours).unwrap())
            .is_ok());
        // ...and hashes stored by earlier versions (the library's hasher) verify with ours.
        let salt = SaltString::generate(&mut OsRng);
        let stock = Argon2::default()
            .hash_password(b"s3cret", &salt)
            .unwrap()
            .to_string();
        assert!(verify_secret("s3cret", &stock));
        assert!(!verify_secret("s3cret!", &stock));
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let signer = TokenSigner::new("k1", 60);
        let (token, claims) = signer.issue("a", Some("u"), "cb_user_auth").unwrap();
        assert_eq!(signer.verify(&token), Some(claims));
        assert!(TokenSigner::new("k2", 60).verify(&token).is_none());
        assert!(signer.verify("garbage").is_none());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let signer = TokenSigner::new("k1", 0);
        let (token, _) = signer.issue("a", None, "cb_api_auth").unwrap();
        assert!(signer.verify(&token).is_none());
        assert_eq!(signer.check(&token), Err(TokenError::Expired));
        assert_eq!(signer.check("garbage"), Err(TokenError::Invalid));
        assert_eq!(
            TokenSigner::new("k2", 0).check(&token),
            Err(TokenError::Invalid)
        );
    }
}
