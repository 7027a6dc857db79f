//! The `[cluster]` section and what a process makes of it: the credentials it demands on Ballista's
//! ports and presents to them ([`ClusterCredentials`]): the cluster key on every request, mutual TLS
//! on every connection.
//!
//! Both are required as soon as a process binds an internal port beyond loopback: without the key,
//! anyone who reaches the port runs plans; without TLS, plans and shuffle files of patient vitals
//! cross the network in clear (unless the operator says the network is trusted: `allow_plaintext`).

use std::sync::Arc;

use ballista_core::extension::{EndpointOverrideFn, SessionConfigExt};
use datafusion::prelude::SessionConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tonic::transport::Server;
use tonic::{Request, Status};

use crate::cluster_key::{ClusterKey, is_loopback, optional_check};
use crate::cluster_tls::{ClusterTls, ClusterTlsFiles};
use crate::{Error, Result};

/// The `[cluster]` section: the secret and the TLS files shared by the scheduler and every executor.
/// `Default` is the only place a default is written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's shared secret (at least 32 characters, e.g. `openssl rand -hex 32`): every Ballista
    /// request between the scheduler, the executors and their clients must prove it. Give it through a
    /// secret store as `VITALFLOW__CLUSTER__SECRET`, or with
    /// `secret_file`, rather than in the file. Required when the scheduler or an executor binds an
    /// address other than loopback; `vitalflow up` makes a random one for each run.
    pub secret: String,
    /// A file holding the secret (trailing whitespace ignored), e.g. a mounted Kubernetes secret; used
    /// when `secret` is empty.
    pub secret_file: String,
    /// This process's certificate chain (PEM) for mutual TLS on Ballista's ports, signed by
    /// `tls_ca_path`'s CA (`deploy/cluster-certs.sh` makes a CA and certificates). With the key and
    /// the CA, every internal connection is encrypted and only processes holding a certificate of the
    /// cluster's CA can connect. Required (or `allow_plaintext`) when the scheduler or an executor binds
    /// an address other than loopback.
    pub tls_cert_path: String,
    /// The private key (PEM) of `tls_cert_path`.
    pub tls_key_path: String,
    /// The cluster's CA certificate (PEM): peers must present a certificate it signed.
    pub tls_ca_path: String,
    /// The name every process's certificate carries and peers check it against; empty: the host
    /// connected to (each certificate then names its own host). Set it when hosts have no stable
    /// names, e.g. Kubernetes executors reached by pod address.
    pub tls_server_name: String,
    /// Let Ballista's ports bind beyond loopback without TLS, on a network you trust to keep patient
    /// data private (plans and shuffle files then cross it in clear; the key still authenticates).
    pub allow_plaintext: bool,
}

impl ClusterConfig {
    /// This process's credentials. `binds` (`(setting, host)`) are the addresses it serves Ballista's
    /// ports on: beyond loopback a secret and TLS (or `allow_plaintext`) are required, and an error
    /// names what is missing; on loopback a missing one leaves the ports open to local processes or in
    /// clear, which is logged.
    pub fn credentials(&self, binds: &[(&str, &str)]) -> Result<ClusterCredentials> {
        Ok(ClusterCredentials { key: self.key(binds)?, tls: self.tls(binds)? })
    }

    /// The key of this cluster, or `None` when no secret is configured and every one of `binds`
    /// is loopback.
    pub fn key(&self, binds: &[(&str, &str)]) -> Result<Option<ClusterKey>> {
        let secret = if !self.secret.trim().is_empty() {
            Some(self.secret.clone())
        } else if !self.secret_file.trim().is_empty() {
            let text = std::fs::read_to_string(self.secret_file.trim()).map_err(|error| {
                Error::Config(format!("reading cluster.secret_file {}: {error}", self.secret_file.trim()))
            })?;
            Some(text)
        } else {
            None
        };
        if let Some(secret) = secret {
            return ClusterKey::from_secret(&secret).map(Some);
        }
        if let Some((setting, host)) = binds.iter().find(|(_, host)| !is_loopback(host)) {
            return Err(Error::Config(format!(
                "{setting} is {host:?}, not loopback: the cluster needs a shared secret (cluster.secret, \
                 cluster.secret_file or VITALFLOW__CLUSTER__SECRET, the same in every process), or anyone who \
                 reaches the Ballista ports can run plans"
            )));
        }
        tracing::warn!(
            "No cluster secret configured: the Ballista ports on loopback accept requests from any local \
             process. Set cluster.secret (or VITALFLOW__CLUSTER__SECRET) to require it."
        );
        Ok(None)
    }

    /// This process's TLS, or `None` when no file is configured and every one of `binds` is loopback
    /// (or plaintext is allowed).
    fn tls(&self, binds: &[(&str, &str)]) -> Result<Option<ClusterTls>> {
        let files = ClusterTlsFiles {
            cert_path: &self.tls_cert_path,
            key_path: &self.tls_key_path,
            ca_path: &self.tls_ca_path,
            server_name: &self.tls_server_name,
        };
        if [files.cert_path, files.key_path, files.ca_path].iter().any(|path| !path.trim().is_empty()) {
            return ClusterTls::load(files).map(Some);
        }
        match binds.iter().find(|(_, host)| !is_loopback(host)) {
            Some((setting, host)) if !self.allow_plaintext => Err(Error::Config(format!(
                "{setting} is {host:?}, not loopback: Ballista's traffic between the cluster's processes (plans, \
                 shuffle files of patient vitals) would cross the network in clear; give every process a \
                 certificate of the cluster's CA (cluster.tls_cert_path, cluster.tls_key_path, cluster.tls_ca_path; \
                 deploy/cluster-certs.sh makes them), or set cluster.allow_plaintext = true on a network you trust"
            ))),
            Some((setting, host)) => {
                tracing::warn!(
                    setting,
                    host,
                    "cluster.allow_plaintext: Ballista's internal traffic crosses the network unencrypted."
                );
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

/// What a process of the cluster demands on its Ballista ports and presents when it calls one.
#[derive(Debug, Clone, Default)]
pub struct ClusterCredentials {
    /// The key every request carries; `None`: requests are not checked (loopback only).
    pub key: Option<ClusterKey>,
    /// Mutual TLS on every connection; `None`: plaintext (loopback, or `allow_plaintext`).
    pub tls: Option<ClusterTls>,
}

impl ClusterCredentials {
    /// Ballista's hook on every internal connection it opens: TLS with this process's certificate, and
    /// the key in the user agent. `None` when there is neither.
    pub fn endpoint_override(&self) -> Option<EndpointOverrideFn> {
        if self.key.is_none() && self.tls.is_none() {
            return None;
        }
        let agent = self.key.as_ref().map(ClusterKey::user_agent);
        let tls = self.tls.clone();
        Some(Arc::new(move |endpoint| {
            let endpoint = match &tls {
                Some(tls) => tls.secure(endpoint)?,
                None => endpoint,
            };
            Ok(match &agent {
                Some(agent) => endpoint.user_agent(agent.clone())?,
                None => endpoint,
            })
        }))
    }

    /// `config` with these credentials on the connections its Ballista clients open (to the scheduler,
    /// to executors for results and shuffle files).
    pub fn session_config(&self, config: SessionConfig) -> SessionConfig {
        // Results and shuffle files are fetched over https: rebuilding those endpoints from http
        // would give them the scheduler connection's request timeout.
        let config = if self.tls.is_some() { config.with_ballista_use_tls(true) } else { config };
        match self.endpoint_override() {
            Some(endpoint) => config.with_ballista_override_create_grpc_client_endpoint(endpoint),
            None => config,
        }
    }

    /// A server for a Ballista port: with TLS when the cluster has it.
    pub fn server(&self, server: Server) -> Result<Server> {
        match &self.tls {
            Some(tls) => server
                .tls_config(tls.server_config())
                .map_err(|e| Error::Config(format!("cluster TLS certificate, key or CA: {e}"))),
            None => Ok(server),
        }
    }

    /// The check every request to a Ballista port passes first: the key, when there is one.
    pub fn request_check(
        &self,
    ) -> impl FnMut(Request<()>) -> std::result::Result<Request<()>, Status> + Clone + Send + Sync + 'static {
        optional_check(self.key.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn config(secret: &str) -> ClusterConfig {
        ClusterConfig { secret: secret.into(), ..ClusterConfig::default() }
    }

    #[test]
    fn short_secrets_are_rejected_and_a_missing_one_only_on_loopback_is_allowed() {
        let err = ClusterKey::from_secret("short").unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{err}");
        let none = ClusterConfig::default();
        assert!(
            none.key(&[("scheduler.bind_host", "127.0.0.1"), ("executor.bind_host", "localhost")]).unwrap().is_none()
        );
        let err = none.key(&[("scheduler.bind_host", "0.0.0.0")]).unwrap_err().to_string();
        assert!(err.contains("scheduler.bind_host") && err.contains("cluster.secret"), "{err}");
        let set = config(SECRET);
        assert!(set.key(&[("scheduler.bind_host", "0.0.0.0")]).unwrap().is_some());
    }

    #[test]
    fn the_secret_file_is_read_and_its_trailing_newline_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let config = ClusterConfig { secret_file: path.display().to_string(), ..ClusterConfig::default() };
        let key = config.key(&[]).unwrap().expect("key");
        assert_eq!(key.presented(), ClusterKey::from_secret(SECRET).unwrap().presented());
        let missing =
            ClusterConfig { secret_file: dir.path().join("nope").display().to_string(), ..ClusterConfig::default() };
        assert!(missing.key(&[]).unwrap_err().to_string().contains("cluster.secret_file"));
    }

    #[test]
    fn tls_is_required_beyond_loopback_unless_plaintext_is_allowed_and_its_files_are_checked_at_start() {
        let keyed = config(SECRET);
        let loopback = keyed.credentials(&[("scheduler.bind_host", "127.0.0.1")]).unwrap();
        assert!(loopback.tls.is_none() && loopback.key.is_some());
        let err = keyed.credentials(&[("executor.bind_host", "0.0.0.0")]).unwrap_err().to_string();
        assert!(err.contains("executor.bind_host") && err.contains("cluster.tls_cert_path"), "{err}");
        assert!(err.contains("cluster.allow_plaintext"), "{err}");
        let trusted = ClusterConfig { allow_plaintext: true, ..keyed.clone() };
        assert!(trusted.credentials(&[("executor.bind_host", "0.0.0.0")]).unwrap().tls.is_none());
        // Half the files is an error naming the missing one; an unreadable file names its setting.
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.display().to_string();
        let half = ClusterConfig { tls_cert_path: junk.clone(), tls_key_path: junk.clone(), ..keyed.clone() };
        let err = half.credentials(&[]).unwrap_err().to_string();
        assert!(err.contains("cluster.tls_ca_path is not set"), "{err}");
        let missing = ClusterConfig { tls_ca_path: dir.path().join("nope").display().to_string(), ..half.clone() };
        let err = missing.credentials(&[]).unwrap_err().to_string();
        assert!(err.contains("reading cluster.tls_ca_path"), "{err}");
        let garbage = ClusterConfig { tls_ca_path: junk, ..half };
        let err = garbage.credentials(&[]).unwrap_err().to_string();
        assert!(err.contains("cluster TLS certificate, key or CA"), "{err}");
    }

    #[test]
    fn the_endpoint_override_makes_tonic_send_the_key_as_user_agent() {
        let credentials = config(SECRET).credentials(&[]).unwrap();
        let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:1");
        let endpoint = (credentials.endpoint_override().expect("a key"))(endpoint).unwrap();
        assert_eq!(endpoint.uri().scheme_str(), Some("http"));
        assert!(ClusterConfig::default().credentials(&[]).unwrap().endpoint_override().is_none());
    }
}
