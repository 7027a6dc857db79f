//! Who may query: users with passwords and static tokens from the configuration, HTTP Basic
//! credentials exchanged for a bearer token, and bearer tokens checked on every call.
//!
//! Issued tokens are signed (HMAC-SHA256), not stored: any scheduler sharing `token_secret` accepts
//! them, they survive a restart when the secret is configured, and nothing grows per client. The
//! user is looked up again on every check, so removing a user from the configuration revokes its
//! tokens at the next restart. Used by Flight SQL and the HTTP API.
//!
//! Passwords are stored as salted PBKDF2-HMAC-SHA256 (`vitalflow hash-password` makes one), so a
//! leaked configuration does not give away passwords shared with other systems. Static tokens are
//! random and long, so a plain SHA-256 of them is enough.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, Role};
use crate::error::{Error, Result};

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
                let hash =
                    parse_hex_sha256(&format!("flight_sql.auth.tokens[{}].token_sha256", t.name), &t.token_sha256)?;
                Ok((hash, Principal { name: t.name.clone(), role: t.role }))
            })
            .collect::<Result<Vec<_>>>()?;
        let key = if config.token_secret.is_empty() {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            key
        } else {
            sha256(config.token_secret.as_bytes())
        };
        Ok(Authenticator {
            required: config.required,
            users,
            tokens,
            ttl: Duration::from_secs(config.token_ttl_seconds),
            key,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether calls need credentials.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Checks `user:password` credentials, base64-encoded as in an HTTP Basic header.
    pub fn check_basic(&self, encoded: &str) -> Result<Principal> {
        let decoded = BASE64_ANY_PADDING
            .decode(encoded.trim())
            .map_err(|_| unauthenticated("Basic credentials are not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| unauthenticated("Basic credentials are not UTF-8"))?;
        let (name, password) = text.split_once(':').ok_or_else(|| unauthenticated("Basic credentials lack ':'"))?;
        let Some((hash, role)) = self.users.get(name) else {
            return Err(unauthenticated("wrong user name or password"));
        };
        let principal = Principal { name: name.to_string(), role: *role };
        let pair = hmac_sha256(&self.key, text.as_bytes());
        let mut verified = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if verified.contains(&pair) {
            return Ok(principal);
        }
        drop(verified);
        if !hash.matches(password) {
            return Err(unauthenticated("wrong user name or password"));
        }
        verified = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(pair);
        Ok(principal)
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

    /// Checks an `authorization` header value (`Basic ...` or `Bearer ...`); when authentication
    /// is off, every caller is the local principal.
    pub fn check_header(&self, value: Option<&str>) -> Result<Principal> {
        if !self.required {
            // Clients configured with credentials keep working against a local server.
            return Ok(Principal::local());
        }
        let Some(value) = value else {
            return Err(unauthenticated(
                "credentials required: sign in with Basic user:password or send a Bearer token",
            ));
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            self.check_basic(credentials)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.check_bearer(credentials)
        } else {
            Err(unauthenticated(format!("unsupported authorization scheme {scheme:?}; use Basic or Bearer")))
        }
    }
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

    #[test]
    fn basic_with_and_without_padding_then_bearer() {
        let auth = Authenticator::new(&config()).unwrap();
        for pad in [true, false] {
            let header = basic_header("ana", "s3cret pass!", pad);
            let who = auth.check_header(Some(&header)).unwrap();
            assert_eq!(who, Principal { name: "ana".into(), role: Role::Admin });
            let token = auth.issue_token(&who);
            assert_eq!(auth.check_header(Some(&format!("Bearer {token}"))).unwrap(), who);
        }
        assert!(basic_header("bo", "x", true).ends_with('='), "the padded case must really carry padding");
    }

    #[test]
    fn wrong_credentials_and_tampered_tokens_are_refused() {
        let auth = Authenticator::new(&config()).unwrap();
        assert!(auth.check_header(None).is_err());
        assert!(auth.check_header(Some(&basic_header("ana", "wrong", true))).is_err());
        assert!(auth.check_header(Some(&basic_header("nobody", "x", true))).is_err());
        assert!(auth.check_header(Some("Bearer tok-2")).is_err());
        assert_eq!(auth.check_header(Some("Bearer tok-1")).unwrap().name, "grafana");
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
        let shared = AuthConfig { token_secret: "k".into(), ..config() };
        let (a, b) = (Authenticator::new(&shared).unwrap(), Authenticator::new(&shared).unwrap());
        let token = a.issue_token(&Principal { name: "bo".into(), role: Role::Reader });
        assert_eq!(b.check_bearer(&token).unwrap().name, "bo");
        let payload = URL_SAFE_NO_PAD.encode(format!("{}:bo", now_unix() - 1));
        let expired = format!("{TOKEN_PREFIX}{payload}.{}", hex(&hmac_sha256(&a.key, payload.as_bytes())));
        assert!(a.check_bearer(&expired).unwrap_err().to_string().contains("expired"));
    }

    #[test]
    fn required_auth_needs_someone_to_sign_in() {
        let err = Authenticator::new(&AuthConfig::default()).unwrap_err().to_string();
        assert!(err.contains("flight_sql.auth.required"), "{err}");
        let off = Authenticator::new(&AuthConfig { required: false, ..AuthConfig::default() }).unwrap();
        assert_eq!(off.check_header(None).unwrap(), Principal::local());
        let bad = AuthConfig {
            users: vec![UserConfig { name: "x".into(), password_hash: secret_sha256("x"), role: Role::Reader }],
            ..AuthConfig::default()
        };
        assert!(Authenticator::new(&bad).unwrap_err().to_string().contains("password_hash"));
    }

    #[test]
    fn password_hashes_are_salted_and_checked_again_after_a_cached_success() {
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
        assert!(auth.check_header(Some(&basic_header("ana", "s3cret pass!", true))).is_ok());
        assert!(auth.check_header(Some(&basic_header("ana", "s3cret pass!", true))).is_ok(), "cached success");
        assert!(auth.check_header(Some(&basic_header("ana", "s3cret pass", true))).is_err(), "cache must not widen");
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
