//! The cluster key: the shared secret every internal Ballista service of a vitalflow cluster (the
//! scheduler's gRPC server, each executor's Flight server) demands of every request, and every internal
//! client (executor → scheduler, executor → executor shuffle fetch, the ETL's and Flight SQL's Ballista
//! client → scheduler and executors) sends. Executors serve no gRPC port of their own: they poll the
//! scheduler for work.
//!
//! On the wire travels not the secret but `HMAC-SHA256(secret, "vitalflow cluster key v1")`, hex: a
//! leaked request does not give away a secret that may be reused elsewhere. Ballista's own clients let
//! us shape only their connection (`tonic::transport::Endpoint`), not their requests, so the key
//! travels as a product of the `user-agent` header (`vitalflow-cluster-key/<hex>`), which tonic sends on
//! every request; other clients may send the [`KEY_HEADER`] metadata instead. The server compares in
//! constant time and refuses with `UNAUTHENTICATED`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::{Error, Result};

/// Metadata a client may carry the key in (hex), instead of the user agent.
pub const KEY_HEADER: &str = "x-vitalflow-cluster-key";
/// The user-agent product that carries the key: `vitalflow-cluster-key/<hex>`.
const USER_AGENT_PRODUCT: &str = "vitalflow-cluster-key/";
/// What the HMAC of the secret is taken over; a new version of the scheme changes it.
const KEY_CONTEXT: &[u8] = b"vitalflow cluster key v1";
/// Shortest secret accepted, in bytes: 32 hex characters are 128 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// Whether `host` is a loopback address (`127.0.0.0/8`, `::1` or `localhost`).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The cluster's key, derived from its secret. Cheap to clone; its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ClusterKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    /// `HMAC-SHA256(secret, KEY_CONTEXT)`: what a request must present.
    token: [u8; 32],
    /// Refusals, and when one was last logged (seconds since the epoch): one WARN per 10 s at most.
    refused: AtomicU64,
    last_logged: AtomicU64,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl ClusterKey {
    /// The key of `secret` (surrounding whitespace ignored, at least [`MIN_SECRET_BYTES`]).
    pub fn from_secret(secret: &str) -> Result<ClusterKey> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::Config(format!(
                "the cluster secret has {} characters; at least {MIN_SECRET_BYTES} are needed (e.g. `openssl rand -hex 32`)",
                secret.len()
            )));
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
            .map_err(|error| Error::Config(format!("cluster secret: {error}")))?;
        mac.update(KEY_CONTEXT);
        let token = mac.finalize().into_bytes().into();
        Ok(ClusterKey {
            inner: Arc::new(KeyInner { token, refused: AtomicU64::new(0), last_logged: AtomicU64::new(0) }),
        })
    }

    /// A fresh random secret (64 hex characters), for a cluster that lives in one process run (`up`).
    pub fn random_secret() -> String {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        hex(&bytes)
    }

    /// What a client presents: the key, hex.
    pub fn presented(&self) -> String {
        hex(&self.inner.token)
    }

    /// The `user-agent` a client sends to present the key.
    pub fn user_agent(&self) -> String {
        format!("{USER_AGENT_PRODUCT}{}", self.presented())
    }

    /// Whether `metadata` presents this key (in [`KEY_HEADER`] or the user agent).
    pub fn verify(&self, metadata: &MetadataMap) -> bool {
        let from_header = metadata.get(KEY_HEADER).and_then(|v| v.to_str().ok());
        let from_agent = || {
            let agent = metadata.get("user-agent").and_then(|v| v.to_str().ok())?;
            agent.split_ascii_whitespace().find_map(|product| product.strip_prefix(USER_AGENT_PRODUCT))
        };
        let Some(presented) = from_header.or_else(from_agent) else { return false };
        match unhex32(presented.trim()) {
            Some(bytes) => bool::from(bytes.ct_eq(&self.inner.token)),
            None => false,
        }
    }

    /// The server-side check: `request` unchanged when it presents the key, else `UNAUTHENTICATED`.
    pub fn check(&self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if self.verify(request.metadata()) {
            return Ok(request);
        }
        self.log_refusal(request.remote_addr());
        Err(Status::unauthenticated(
            "missing or wrong vitalflow cluster key: every process of the cluster needs the same cluster.secret",
        ))
    }

    fn log_refusal(&self, peer: Option<std::net::SocketAddr>) {
        let refused = self.inner.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.inner.last_logged.load(Ordering::Relaxed);
        if now >= last + 10
            && self.inner.last_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            tracing::warn!(%peer, refused_total = refused, "Refused a Ballista request without the cluster key.");
        }
    }

    /// How many requests this key has refused.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

/// A server-side check for an optional key: with none, every request passes.
pub fn optional_check(
    key: Option<&ClusterKey>,
) -> impl FnMut(Request<()>) -> std::result::Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    let key = key.cloned();
    move |request| match &key {
        Some(key) => key.check(request),
        None => Ok(request),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex characters as 32 bytes; anything else is `None`.
fn unhex32(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn request_with(header: Option<(&'static str, String)>) -> Request<()> {
        let mut request = Request::new(());
        if let Some((name, value)) = header {
            request.metadata_mut().insert(name, value.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn requests_without_or_with_a_wrong_key_are_refused_as_unauthenticated() {
        let key = ClusterKey::from_secret(SECRET).unwrap();
        let other = ClusterKey::from_secret(&format!("{SECRET}-other")).unwrap();
        let refused = [
            request_with(None),
            request_with(Some((KEY_HEADER, other.presented()))),
            request_with(Some(("user-agent", format!("{} tonic/0.14.9", other.user_agent())))),
            request_with(Some((KEY_HEADER, "not hex at all".into()))),
            request_with(Some((KEY_HEADER, key.presented()[..62].to_string()))),
            // The secret itself is not the key.
            request_with(Some((KEY_HEADER, SECRET.into()))),
        ];
        for request in refused {
            let status = key.check(request).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
        }
        assert_eq!(key.refused(), 6);
        assert!(key.check(request_with(Some((KEY_HEADER, key.presented())))).is_ok());
        // As tonic sends it: our product first, then tonic's own.
        assert!(key.check(request_with(Some(("user-agent", format!("{} tonic/0.14.9", key.user_agent()))))).is_ok());
        assert_eq!(key.refused(), 6);
    }

    #[test]
    fn random_secrets_differ_and_a_key_shows_nothing_of_itself() {
        let key = ClusterKey::from_secret(SECRET).unwrap();
        assert_eq!(ClusterKey::random_secret().len(), 64);
        assert_ne!(ClusterKey::random_secret(), ClusterKey::random_secret());
        assert_eq!(format!("{key:?}"), "ClusterKey(<redacted>)");
    }
}
