//! Mutual TLS on Ballista's ports: every process of a cluster holds a certificate signed by the
//! cluster's own CA, serves its internal ports with it and presents it when it calls another process,
//! and accepts only peers whose certificate that CA signed. The cluster key ([`crate::ClusterKey`])
//! authenticates each request; TLS keeps plans and shuffle files of patient vitals off the wire in
//! clear and keeps anyone without a cluster certificate from completing a connection at all.
//!
//! Ballista builds every internal connection itself, as `http://host:port`, and lets vitalflow shape
//! only the finished endpoint ([`EndpointOverrideFn`]); tonic encrypts only `https` endpoints, so the
//! endpoint is rebuilt with the `https` scheme here, with the settings Ballista gives those
//! connections.

use ballista_core::utils::{GrpcClientConfig, create_grpc_client_endpoint};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

use crate::{Error, Result};

/// Where a process finds its cluster certificate, key and the cluster's CA (all PEM files), and the
/// name peers' certificates are checked against.
#[derive(Debug, Clone, Copy)]
pub struct ClusterTlsFiles<'a> {
    /// This process's certificate chain.
    pub cert_path: &'a str,
    /// Its private key.
    pub key_path: &'a str,
    /// The CA that signed every process's certificate.
    pub ca_path: &'a str,
    /// Name every peer's certificate must carry; empty: the host connected to.
    pub server_name: &'a str,
}

/// A process's loaded cluster certificate, key and CA.
#[derive(Clone)]
pub struct ClusterTls {
    identity: Identity,
    ca: Certificate,
    server_name: Option<String>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Reads the three files and checks that they make a usable server and client configuration, so
    /// that a bad file stops the process at start, naming the setting, not at its first connection.
    pub fn load(files: ClusterTlsFiles<'_>) -> Result<ClusterTls> {
        let read = |setting: &str, path: &str| {
            if path.trim().is_empty() {
                return Err(Error::Config(format!(
                    "cluster.{setting} is not set: cluster TLS needs cluster.tls_cert_path, cluster.tls_key_path \
                     and cluster.tls_ca_path together"
                )));
            }
            std::fs::read(path.trim()).map_err(|e| Error::Config(format!("reading cluster.{setting} {path:?}: {e}")))
        };
        let cert = read("tls_cert_path", files.cert_path)?;
        let key = read("tls_key_path", files.key_path)?;
        let ca = read("tls_ca_path", files.ca_path)?;
        let server_name = Some(files.server_name.trim().to_string()).filter(|name| !name.is_empty());
        let tls = ClusterTls { identity: Identity::from_pem(cert, key), ca: Certificate::from_pem(ca), server_name };
        install_crypto_provider();
        Server::builder()
            .tls_config(tls.server_config())
            .map_err(|e| Error::Config(format!("cluster TLS certificate, key or CA: {e}")))?;
        tls.secure(Endpoint::from_static("http://localhost"))
            .map_err(|e| Error::Config(format!("cluster TLS certificate, key or CA: {e}")))?;
        Ok(tls)
    }

    /// The server side: this process's certificate, and a client certificate signed by the cluster's
    /// CA demanded of every peer.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(self.identity.clone()).client_ca_root(self.ca.clone())
    }

    /// `endpoint` over TLS: `https`, the server checked against the cluster's CA (and
    /// `server_name`, when set), this process's certificate presented.
    pub fn secure(&self, endpoint: Endpoint) -> std::result::Result<Endpoint, tonic::transport::Error> {
        let uri = endpoint.uri();
        let host = uri.host().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_string();
        let endpoint = if uri.scheme_str() == Some("https") {
            endpoint
        } else {
            // Rebuilt, since an endpoint's address cannot change: with the settings Ballista gives the
            // connections it opens as http (to the scheduler).
            let port = uri.port_u16().map_or(String::new(), |port| format!(":{port}"));
            let authority = if host.contains(':') { format!("[{host}]") } else { host.clone() };
            create_grpc_client_endpoint(format!("https://{authority}{port}"), Some(&GrpcClientConfig::default()))?
        };
        let name = self.server_name.clone().unwrap_or(host);
        endpoint.tls_config(
            ClientTlsConfig::new().ca_certificate(self.ca.clone()).identity(self.identity.clone()).domain_name(name),
        )
    }
}

/// rustls needs one crypto provider chosen; ring and aws-lc-rs are both linked (through different
/// dependencies), so none is chosen by itself. Installing ring twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
