//! Who may query: users with passwords and static tokens from the configuration, HTTP Basic
//! credentials exchanged for a bearer token, and bearer tokens checked on every call.
//!
//! Issued tokens are signed (HMAC-SHA256), not stored: any scheduler sharing `token_secret` accepts
//! them, they survive a restart when the secret is configured, and nothing grows per client. A token
//! is issued only for a password sign-in and is never renewed by presenting it (the handshake hands
//! the same token back), so it ends at its expiry. The user is looked up again on every check, so
//! removing a user revokes its tokens at the next restart; a new `token_secret` revokes every issued
//! token at once. Users and static tokens share one namespace of names. Used by Flight SQL and the
//! HTTP API.
//!
//! Passwords are stored as salted PBKDF2-HMAC-SHA256 (`vitalflow hash-password` makes one), so a
//! leaked configuration does not give away passwords shared with other systems. Static tokens are
//! random and long, so a plain SHA-256 of them is enough.
//!
//! The password hash is slow on purpose, so it runs off the async workers (on tokio's blocking
//! threads), at most [`password_check_concurrency`] at once; an unknown user name costs the same hash
//! as a wrong password (against a dummy hash), so names cannot be told apart by timing. Repeated
//! wrong passwords make the name and the client address wait ([`SignInBackoff`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, Role};
use crate::error::{Error, Result};
use crate::front_door::sign_in_backoff::SignInBackoff;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User or token name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Principal {
    /// The caller when authentication is off (local `up`): the person at the machine.
    pub fn local() -> Principal {
        Principal { name: "local".into(), role: Role::Admin }
    }
}

/// Checks credentials and issues tokens.
pub struct Authenticator {
    required: bool,
    users: HashMap<String, (PasswordHash, Role)>,
    tokens: Vec<(Vec<u8>, Principal)>,
    ttl: Duration,
    key: [u8; 32],
    /// Keyed digests of `user:password` pairs verified since start: the slow hash runs once per
    /// pair, not on every HTTP request that sends Basic credentials.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// What an unknown user's password is checked against: as slow as a real user's hash.
    dummy: PasswordHash,
    /// Password hashes running at once, at most [`password_check_concurrency`].
    hashing: tokio::sync::Semaphore,
    /// Password hashes computed since start.
    hash_calls: Arc<AtomicU64>,
    /// Failed sign-ins by name and address, and the waits they earned.
    backoff: SignInBackoff,
}

/// Shortest `token_secret` accepted, in characters: 32 hex characters are 128 bits.
pub const MIN_TOKEN_SECRET_CHARS: usize = 32;

/// Password hashes that may run at once: half the cores (at least one), so that sign-in attempts
/// cannot take every core from queries, the ETL and ingest.
pub fn password_check_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The slow half of a Basic check: one password hash, run off the async workers.
struct PasswordCheck {
    /// The user, or `None` for an unknown name (checked against the dummy hash all the same).
    principal: Option<Principal>,
    hash: PasswordHash,
    password: String,
    /// Keyed digest of `user:password`, remembered on success.
    pair: [u8; 32],
}

/// A Basic check after its fast half: done (a remembered success), or a password to hash.
enum BasicStep {
    Known(Principal),
    Hash(PasswordCheck),
}

/// Most remembered verified credentials; the set starts over when full.
const VERIFIED_CAPACITY: usize = 4096;

/// Iterations `vitalflow hash-password` uses (OWASP's 2023 advice for PBKDF2-HMAC-SHA256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// Scheme name at the start of a password hash.
const PBKDF2_SCHEME: &str = "pbkdf2-sha256";

/// A parsed `password_hash`.
#[derive(Debug, Clone, PartialEq)]
struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl PasswordHash {
    fn parse(field: &str, value: &str) -> Result<PasswordHash> {
        let bad = |why: &str| {
            Error::Config(format!(
                "{field} must be {PBKDF2_SCHEME}$<iterations>$<salt>$<hash> as `vitalflow hash-password` prints it: {why}"
            ))
        };
        let parts: Vec<&str> = value.split('$').collect();
        let [scheme, iterations, salt, hash] = parts[..] else {
            return Err(bad(&format!("found {} '$'-separated parts, not 4", parts.len())));
        };
        if scheme != PBKDF2_SCHEME {
            return Err(bad(&format!("unknown scheme {scheme:?}")));
        }
        let iterations: u32 = iterations.parse().map_err(|_| bad("iterations is not a number"))?;
        let salt = BASE64_ANY_PADDING.decode(salt).map_err(|_| bad("salt is not base64"))?;
        let hash = BASE64_ANY_PADDING.decode(hash).map_err(|_| bad("hash is not base64"))?;
        if iterations == 0 || salt.len() < 8 || hash.len() != 32 {
            return Err(bad("needs iterations above 0, a salt of at least 8 bytes and a 32-byte hash"));
        }
        Ok(PasswordHash { iterations, salt, hash })
    }

    fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
        out
    }

    fn matches(&self, password: &str) -> bool {
        constant_time_eq(&Self::derive(password, &self.salt, self.iterations), &self.hash)
    }
}

/// A `password_hash` value for `password` with a fresh random salt.
pub fn hash_password(password: &str, iterations: u32) -> String {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let hash = PasswordHash::derive(password, &salt, iterations);
    let b64 = general_purpose::STANDARD_NO_PAD;
    format!("{PBKDF2_SCHEME}${iterations}${}${}", b64.encode(salt), b64.encode(hash))
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("required", &self.required).finish_non_exhaustive()
    }
}

/// Standard base64 accepting input with or without `=` padding (Go clients send none).
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Prefix of issued tokens (a version, so the format can change).
const TOKEN_PREFIX: &str = "vf1.";

fn unauthenticated(reason: impl Into<String>) -> Error {
    Error::Unauthenticated(reason.into())
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex_sha256(field: &str, value: &str) -> Result<Vec<u8>> {
    let bad = || Error::Config(format!("{field} must be 64 hex digits (a SHA-256), got {} characters", value.len()));
    if value.len() != 64 {
        return Err(bad());
    }
    (0..32).map(|i| u8::from_str_radix(&value[2 * i..2 * i + 2], 16).map_err(|_| bad())).collect()
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104) with a 32-byte key.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut inner = Sha256::new();
    let mut outer = Sha256::new();
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// Checks the configuration (hashes well formed, someone can sign in when auth is required).
    pub fn new(config: &AuthConfig) -> Result<Authenticator> {
        if config.required && config.users.is_empty() && config.tokens.is_empty() {
            return Err(Error::Config(
                "flight_sql.auth.required is true but no flight_sql.auth.users or flight_sql.auth.tokens are configured; \
                 add a user (password_hash, from `vitalflow hash-password`) or a token, or set flight_sql.auth.required = false for a local-only server"
                    .into(),
            ));
        }
        if config.token_ttl_seconds == 0 {
            return Err(Error::Config("flight_sql.auth.token_ttl_seconds must be above 0".into()));
        }
        let mut users = HashMap::new();
        for u in &config.users {
            let hash =
                PasswordHash::parse(&format!("flight_sql.auth.users[{}].password_hash", u.name), &u.password_hash)?;
            if users.insert(u.name.clone(), (hash, u.role)).is_some() {
                return Err(Error::Config(format!("flight_sql.auth.users names {:?} twice", u.name)));
            }
        }
        let tokens = config
            .tokens
            .iter()
            .map(|t| {
                // One namespace: a token named like a user would be taken for that user.
                if users.contains_key(&t.name) {
                    return Err(Error::Config(format!(
                        "flight_sql.auth.tokens[{}] has the name of a user: users and tokens need distinct names",
                        t.name
                    )));
                }
                let hash =
                    parse_hex_sha256(&format!("flight_sql.auth.tokens[{}].token_sha256", t.name), &t.token_sha256)?;
                Ok((hash, Principal { name: t.name.clone(), role: t.role }))
            })
            .collect::<Result<Vec<_>>>()?;
        if !config.token_secret.is_empty() && config.token_secret.chars().count() < MIN_TOKEN_SECRET_CHARS {
            return Err(Error::Config(format!(
                "flight_sql.auth.token_secret is shorter than {MIN_TOKEN_SECRET_CHARS} characters: anyone who guesses it \
                 can sign tokens; make one with `openssl rand -hex 32`"
            )));
        }
        let key = if config.token_secret.is_empty() {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            key
        } else {
            sha256(config.token_secret.as_bytes())
        };
        // As slow as the slowest configured hash (the default's iterations when there is none).
        let iterations =
            users.values().map(|(h, _): &(PasswordHash, Role)| h.iterations).max().unwrap_or(PBKDF2_ITERATIONS);
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let dummy = PasswordHash { iterations, hash: PasswordHash::derive("", &salt, 1).to_vec(), salt: salt.to_vec() };
        Ok(Authenticator {
            required: config.required,
            users,
            tokens,
            ttl: Duration::from_secs(config.token_ttl_seconds),
            key,
            verified: Mutex::new(HashSet::new()),
            dummy,
            hashing: tokio::sync::Semaphore::new(password_check_concurrency()),
            hash_calls: Arc::new(AtomicU64::new(0)),
            backoff: SignInBackoff::default(),
        })
    }

    /// Whether calls need credentials.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Password hashes computed since start (unknown users included).
    pub fn hash_calls(&self) -> u64 {
        self.hash_calls.load(Ordering::Relaxed)
    }

    /// The failed sign-ins and their waits (for `/metrics`).
    pub fn backoff(&self) -> &SignInBackoff {
        &self.backoff
    }

    /// The same checks with another backoff (tests that cannot wait a minute).
    #[cfg(test)]
    fn with_backoff(mut self, backoff: SignInBackoff) -> Authenticator {
        self.backoff = backoff;
        self
    }

    /// The fast half of checking `user:password` credentials, base64-encoded as in an HTTP Basic
    /// header: decoding, the user's hash (the dummy for an unknown name), a remembered success.
    fn begin_basic(&self, encoded: &str) -> Result<(String, BasicStep)> {
        let decoded = BASE64_ANY_PADDING
            .decode(encoded.trim())
            .map_err(|_| unauthenticated("Basic credentials are not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| unauthenticated("Basic credentials are not UTF-8"))?;
        let (name, password) = text.split_once(':').ok_or_else(|| unauthenticated("Basic credentials lack ':'"))?;
        let pair = hmac_sha256(&self.key, text.as_bytes());
        let Some((hash, role)) = self.users.get(name) else {
            let check = PasswordCheck { principal: None, hash: self.dummy.clone(), password: password.into(), pair };
            return Ok((name.to_string(), BasicStep::Hash(check)));
        };
        let principal = Principal { name: name.to_string(), role: *role };
        let verified = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if verified.contains(&pair) {
            return Ok((name.to_string(), BasicStep::Known(principal)));
        }
        let check = PasswordCheck { principal: Some(principal), hash: hash.clone(), password: password.into(), pair };
        Ok((name.to_string(), BasicStep::Hash(check)))
    }

    /// The slow half: the password hash, on a blocking thread, at most [`password_check_concurrency`]
    /// at once.
    async fn finish_basic(&self, check: PasswordCheck) -> Result<Principal> {
        let _permit = self.hashing.acquire().await.map_err(|_| unauthenticated("the server is shutting down"))?;
        let calls = self.hash_calls.clone();
        let (hash, password) = (check.hash.clone(), check.password.clone());
        let matched = tokio::task::spawn_blocking(move || {
            calls.fetch_add(1, Ordering::Relaxed);
            hash.matches(&password)
        })
        .await
        .map_err(|_| unauthenticated("checking the password failed"))?;
        match (check.principal, matched) {
            (Some(principal), true) => {
                let mut verified = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if verified.len() >= VERIFIED_CAPACITY {
                    verified.clear();
                }
                verified.insert(check.pair);
                Ok(principal)
            }
            _ => Err(unauthenticated("wrong user name or password")),
        }
    }

    /// Checks `user:password` credentials, base64-encoded as in an HTTP Basic header, sent from
    /// `peer`. Credentials that signed in before wait only for the address's backoff (a user whose name
    /// is under attack keeps working from elsewhere); others wait for the name's and the address's
    /// (refused unchecked until then).
    pub async fn check_basic(&self, encoded: &str, peer: Option<IpAddr>) -> Result<Principal> {
        let waiting = |wait: Duration| {
            unauthenticated(format!(
                "too many failed sign-ins for this user or from this address: try again in {} s",
                wait.as_secs_f64().ceil() as u64
            ))
        };
        let (name, check) = match self.begin_basic(encoded)? {
            (_, BasicStep::Known(principal)) => {
                self.backoff.check_address(peer).map_err(waiting)?;
                return Ok(principal);
            }
            (name, BasicStep::Hash(check)) => (name, check),
        };
        self.backoff.check(&name, peer).map_err(waiting)?;
        let checked = self.finish_basic(check).await;
        match &checked {
            Ok(_) => self.backoff.succeeded(&name, peer),
            Err(_) => self.backoff.failed(&name, peer),
        }
        checked
    }

    /// A bearer token for `principal`, valid for the configured lifetime.
    pub fn issue_token(&self, principal: &Principal) -> String {
        let expires = now_unix() + self.ttl.as_secs();
        let payload = URL_SAFE_NO_PAD.encode(format!("{expires}:{}", principal.name));
        let signature = hmac_sha256(&self.key, payload.as_bytes());
        format!("{TOKEN_PREFIX}{payload}.{}", hex(&signature))
    }

    /// Checks a bearer token: one this server issued (signature, expiry, user still configured) or a static one.
    pub fn check_bearer(&self, token: &str) -> Result<Principal> {
        let token = token.trim();
        if let Some(rest) = token.strip_prefix(TOKEN_PREFIX) {
            let (payload, signature) = rest.rsplit_once('.').ok_or_else(|| unauthenticated("malformed token"))?;
            let expected = hex(&hmac_sha256(&self.key, payload.as_bytes()));
            if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
                return Err(unauthenticated("invalid token"));
            }
            let claims = URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| unauthenticated("malformed token"))?;
            let (expires, name) = claims.split_once(':').ok_or_else(|| unauthenticated("malformed token"))?;
            let expires: u64 = expires.parse().map_err(|_| unauthenticated("malformed token"))?;
            if expires <= now_unix() {
                return Err(unauthenticated("token expired; sign in again"));
            }
            let (_, role) = self.users.get(name).ok_or_else(|| unauthenticated("token's user no longer exists"))?;
            return Ok(Principal { name: name.to_string(), role: *role });
        }
        let given = sha256(token.as_bytes());
        self.tokens
            .iter()
            .find(|(hash, _)| constant_time_eq(hash, &given))
            .map(|(_, p)| p.clone())
            .ok_or_else(|| unauthenticated("invalid token"))
    }

    /// Signs in with an `authorization` header value (the Flight handshake): a password gets a new
    /// token; a token is checked and handed back as it is (not renewed, so it still ends at its
    /// expiry).
    pub async fn sign_in(&self, value: Option<&str>, peer: Option<IpAddr>) -> Result<(Principal, String)> {
        let principal = self.check_header(value, peer).await?;
        let presented = value.map(scheme_and_credentials).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
        let token = match presented {
            Some((_, token)) if self.required => token.trim().to_string(),
            _ => self.issue_token(&principal),
        };
        Ok((principal, token))
    }

    /// Checks an `authorization` header value (`Basic ...` or `Bearer ...`) sent from `peer`; when
    /// authentication is off, every caller is the local principal. A password is hashed off the
    /// async workers.
    pub async fn check_header(&self, value: Option<&str>, peer: Option<IpAddr>) -> Result<Principal> {
        if !self.required {
            // Clients configured with credentials keep working against a local server.
            return Ok(Principal::local());
        }
        let Some(value) = value else {
            return Err(unauthenticated(
                "credentials required: sign in with Basic user:password or send a Bearer token",
            ));
        };
        let (scheme, credentials) = scheme_and_credentials(value);
        if scheme.eq_ignore_ascii_case("basic") {
            self.check_basic(credentials, peer).await
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.check_bearer(credentials)
        } else if scheme.len() <= 16 && scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
            Err(unauthenticated(format!("unsupported authorization scheme {scheme:?}; use Basic or Bearer")))
        } else {
            // Most likely a bare token: never echoed, as the refusal is logged.
            Err(unauthenticated("the authorization value has no scheme; send Basic user:password or Bearer <token>"))
        }
    }
}

/// An `authorization` value's scheme and what follows it (empty when there is no space).
fn scheme_and_credentials(value: &str) -> (&str, &str) {
    let value = value.trim();
    value.split_once(' ').unwrap_or((value, ""))
}

/// Hex SHA-256 of a secret, as `token_sha256` expects.
pub fn secret_sha256(secret: &str) -> String {
    hex(&sha256(secret.as_bytes()))
}

/// `user:password` as a Basic header value; `pad` false drops `=` padding as Go clients do.
pub fn basic_header(user: &str, password: &str, pad: bool) -> String {
    let raw = format!("{user}:{password}");
    let encoded =
        if pad { general_purpose::STANDARD.encode(raw) } else { general_purpose::STANDARD_NO_PAD.encode(raw) };
    format!("Basic {encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TokenConfig, UserConfig};

    fn config() -> AuthConfig {
        AuthConfig {
            users: vec![
                UserConfig {
                    name: "ana".into(),
                    password_hash: hash_password("s3cret pass!", 1000),
                    role: Role::Admin,
                },
                UserConfig { name: "bo".into(), password_hash: hash_password("x", 1000), role: Role::Reader },
            ],
            tokens: vec![TokenConfig {
                name: "grafana".into(),
                token_sha256: secret_sha256("tok-1"),
                role: Role::Reader,
            }],
            ..AuthConfig::default()
        }
    }

    #[tokio::test]
    async fn basic_with_and_without_padding_then_bearer() {
        let auth = Authenticator::new(&config()).unwrap();
        for pad in [true, false] {
            let header = basic_header("ana", "s3cret pass!", pad);
            let who = auth.check_header(Some(&header), None).await.unwrap();
            assert_eq!(who, Principal { name: "ana".into(), role: Role::Admin });
            let token = auth.issue_token(&who);
            assert_eq!(auth.check_header(Some(&format!("Bearer {token}")), None).await.unwrap(), who);
        }
        assert!(basic_header("bo", "x", true).ends_with('='), "the padded case must really carry padding");
    }

    #[tokio::test]
    async fn wrong_credentials_and_tampered_tokens_are_refused() {
        let auth = Authenticator::new(&config()).unwrap();
        assert!(auth.check_header(None, None).await.is_err());
        assert!(auth.check_header(Some(&basic_header("ana", "wrong", true)), None).await.is_err());
        assert!(auth.check_header(Some(&basic_header("nobody", "x", true)), None).await.is_err());
        assert!(auth.check_header(Some("Bearer tok-2"), None).await.is_err());
        assert_eq!(auth.check_header(Some("Bearer tok-1"), None).await.unwrap().name, "grafana");
        let token = auth.issue_token(&Principal { name: "bo".into(), role: Role::Reader });
        // Claiming another user with bo's signature fails.
        let forged = format!(
            "{TOKEN_PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode("99999999999:ana"),
            token.rsplit_once('.').unwrap().1
        );
        assert!(auth.check_bearer(&forged).is_err());
        // Another server's key does not verify this one's tokens.
        let other = Authenticator::new(&config()).unwrap();
        assert!(other.check_bearer(&token).is_err());
    }

    #[test]
    fn a_shared_secret_lets_any_instance_verify_and_expiry_is_enforced() {
        let shared = AuthConfig { token_secret: "k".repeat(MIN_TOKEN_SECRET_CHARS), ..config() };
        let (a, b) = (Authenticator::new(&shared).unwrap(), Authenticator::new(&shared).unwrap());
        let token = a.issue_token(&Principal { name: "bo".into(), role: Role::Reader });
        assert_eq!(b.check_bearer(&token).unwrap().name, "bo");
        let payload = URL_SAFE_NO_PAD.encode(format!("{}:bo", now_unix() - 1));
        let expired = format!("{TOKEN_PREFIX}{payload}.{}", hex(&hmac_sha256(&a.key, payload.as_bytes())));
        assert!(a.check_bearer(&expired).unwrap_err().to_string().contains("expired"));
    }

    #[tokio::test]
    async fn required_auth_needs_someone_to_sign_in() {
        let err = Authenticator::new(&AuthConfig::default()).unwrap_err().to_string();
        assert!(err.contains("flight_sql.auth.required"), "{err}");
        let off = Authenticator::new(&AuthConfig { required: false, ..AuthConfig::default() }).unwrap();
        assert_eq!(off.check_header(None, None).await.unwrap(), Principal::local());
        let bad = AuthConfig {
            users: vec![UserConfig { name: "x".into(), password_hash: secret_sha256("x"), role: Role::Reader }],
            ..AuthConfig::default()
        };
        assert!(Authenticator::new(&bad).unwrap_err().to_string().contains("password_hash"));
    }

    #[tokio::test]
    async fn password_hashes_are_salted_and_checked_again_after_a_cached_success() {
        let (a, b) = (hash_password("same", 1000), hash_password("same", 1000));
        assert_ne!(a, b, "two hashes of one password must differ by their salt");
        let parsed = PasswordHash::parse("f", &a).unwrap();
        assert!(parsed.matches("same") && !parsed.matches("Same"));
        // RFC 7914 section 11's PBKDF2-HMAC-SHA256 vector (first 32 bytes).
        assert_eq!(
            hex(&PasswordHash::derive("passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        let auth = Authenticator::new(&config()).unwrap();
        assert!(auth.check_header(Some(&basic_header("ana", "s3cret pass!", true)), None).await.is_ok());
        assert!(
            auth.check_header(Some(&basic_header("ana", "s3cret pass!", true)), None).await.is_ok(),
            "cached success"
        );
        assert!(
            auth.check_header(Some(&basic_header("ana", "s3cret pass", true)), None).await.is_err(),
            "cache must not widen"
        );
    }

    #[tokio::test]
    async fn unknown_users_cost_the_same_password_hash_as_wrong_passwords() {
        let auth = Authenticator::new(&config()).unwrap();
        let calls = |expected: u64| assert_eq!(auth.hash_calls(), expected);
        assert!(auth.check_header(Some(&basic_header("nobody", "x", true)), None).await.is_err());
        calls(1);
        assert!(auth.check_header(Some(&basic_header("ana", "wrong", true)), None).await.is_err());
        calls(2);
        // The dummy is as slow as the real hashes: the same iterations.
        assert_eq!(auth.dummy.iterations, 1000);
        assert!(auth.check_header(Some(&basic_header("ana", "s3cret pass!", true)), None).await.is_ok());
        calls(3);
        // A remembered success and a bearer token hash nothing.
        assert!(auth.check_header(Some(&basic_header("ana", "s3cret pass!", true)), None).await.is_ok());
        assert!(auth.check_header(Some("Bearer tok-1"), None).await.is_ok());
        calls(3);
    }

    #[tokio::test]
    async fn password_hashes_wait_for_a_free_slot_without_blocking_the_caller() {
        let auth = std::sync::Arc::new(Authenticator::new(&config()).unwrap());
        // Every slot taken: a check waits (yielding, so this task keeps running) and hashes nothing.
        let slots = auth.hashing.acquire_many(password_check_concurrency() as u32).await.unwrap();
        let waiting = tokio::spawn({
            let auth = auth.clone();
            async move { auth.check_header(Some(&basic_header("bo", "x", true)), None).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished());
        assert_eq!(auth.hash_calls(), 0);
        drop(slots);
        assert_eq!(waiting.await.unwrap().unwrap().name, "bo");
        assert_eq!(auth.hash_calls(), 1);
    }

    #[tokio::test]
    async fn a_token_sent_without_a_scheme_is_not_echoed_in_the_refusal() {
        let auth = Authenticator::new(&config()).unwrap();
        let token = "vf1.ZXhhbXBsZQ.0123456789abcdef-secret-part";
        let refusal = auth.check_header(Some(token), None).await.unwrap_err().to_string();
        assert!(!refusal.contains("secret-part") && refusal.contains("no scheme"), "{refusal}");
        let refusal = auth.check_header(Some("Digest abc"), None).await.unwrap_err().to_string();
        assert!(refusal.contains("\"Digest\""), "{refusal}");
    }

    #[tokio::test]
    async fn repeated_wrong_passwords_wait_without_hashing_and_a_remembered_sign_in_still_passes() {
        let backoff = SignInBackoff::with_waits(Duration::from_millis(300), Duration::from_millis(300));
        let auth = Authenticator::new(&config()).unwrap().with_backoff(backoff);
        let attacker = Some(IpAddr::from([10, 0, 0, 66]));
        // The user signed in once before the attack, from the ward.
        let right = basic_header("ana", "s3cret pass!", true);
        assert!(auth.check_header(Some(&right), Some(IpAddr::from([10, 0, 0, 7]))).await.is_ok());
        let before = auth.hash_calls();
        let mut waits = 0;
        for i in 0..200 {
            let wrong = basic_header("ana", &format!("guess-{i}"), true);
            let refusal = auth.check_header(Some(&wrong), attacker).await.unwrap_err().to_string();
            waits += usize::from(refusal.contains("too many failed sign-ins"));
        }
        // Five free failures, then one hash each time the short wait has run out.
        assert!(auth.hash_calls() - before <= 10, "hashed {} times", auth.hash_calls() - before);
        assert!(waits >= 190, "{waits} of 200 waited");
        assert!(auth.backoff().refused_total() >= 190);
        // The right password from the attacker's address waits too (even one remembered: no address may
        // probe remembered passwords at full speed); the user, from elsewhere, keeps working.
        let refusal = auth.check_header(Some(&right), attacker).await.unwrap_err().to_string();
        assert!(refusal.contains("too many failed sign-ins"), "{refusal}");
        assert!(auth.check_header(Some(&right), Some(IpAddr::from([10, 0, 0, 7]))).await.is_ok());
        // A new password of another user waits for its address only: from elsewhere it is checked.
        let bo = basic_header("bo", "x", true);
        assert!(auth.check_header(Some(&bo), attacker).await.is_err());
        assert!(auth.check_header(Some(&bo), None).await.is_ok());
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(auth.check_header(Some(&basic_header("ana", "nope", true)), attacker).await.is_err());
        assert_eq!(auth.backoff().failed_total(), auth.hash_calls() - before - 1);
    }

    #[tokio::test]
    async fn the_handshake_hands_a_token_back_as_it_is_and_a_password_gets_a_new_one() {
        let auth = Authenticator::new(&config()).unwrap();
        let (who, token) = auth.sign_in(Some(&basic_header("bo", "x", true)), None).await.unwrap();
        assert_eq!(who.name, "bo");
        let (again, same) = auth.sign_in(Some(&format!("Bearer {token}")), None).await.unwrap();
        assert_eq!((again, same), (who, token), "not renewed");
        let (grafana, static_token) = auth.sign_in(Some("Bearer tok-1"), None).await.unwrap();
        assert_eq!((grafana.name.as_str(), static_token.as_str()), ("grafana", "tok-1"));
    }

    #[test]
    fn a_token_named_like_a_user_and_a_short_token_secret_are_refused() {
        let mut clash = config();
        clash.tokens[0].name = "ana".into();
        let Err(err) = Authenticator::new(&clash) else { panic!("a token named like a user must be refused") };
        let err = err.to_string();
        assert!(err.contains("distinct names"), "{err}");
        let short = AuthConfig { token_secret: "hunter2".into(), ..config() };
        let Err(err) = Authenticator::new(&short) else { panic!("a short token_secret must be refused") };
        let err = err.to_string();
        assert!(err.contains("token_secret") && err.contains("32"), "{err}");
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape() {
        // RFC 4231 uses short keys; with a 32-byte zero-padded key HMAC is the same function.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
