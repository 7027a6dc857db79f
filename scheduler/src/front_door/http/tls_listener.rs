//! TLS for the HTTP API: a listener that hands axum only connections whose TLS handshake finished.
//!
//! Handshakes run in tasks of their own, at most [`MAX_HANDSHAKES`] at once and each within
//! [`HANDSHAKE_TIMEOUT`], so a client that opens a connection and sends nothing holds up no one else
//! and cannot pile up connections without end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 128;
/// Time a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS from a PEM certificate chain and key; errors name the settings.
pub(super) fn server_config(cert_path: &str, key_path: &str) -> Result<Arc<ServerConfig>> {
    let read = |setting: &str, path: &str| {
        std::fs::read(path).map_err(|e| Error::Config(format!("reading http.{setting} {path:?}: {e}")))
    };
    let certs = CertificateDer::pem_slice_iter(&read("tls_cert_path", cert_path)?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("http.tls_cert_path {cert_path:?} is not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("http.tls_cert_path {cert_path:?} holds no certificate")));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("tls_key_path", key_path)?)
        .map_err(|e| Error::Config(format!("http.tls_key_path {key_path:?} is not a PEM private key: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("http TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("http.tls_cert_path and http.tls_key_path do not make a pair: {e}")))?;
    // The API speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections arrive with their TLS handshake done.
pub(super) struct TlsListener {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`, each connection through a handshake with `config`.
    pub(super) fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (ready, connections) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        let accepting = tokio::spawn(accept(listener, acceptor, ready));
        Ok(TlsListener { connections, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Accepts connections and starts their handshakes until the listener is dropped.
async fn accept(listener: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(%error, "Accepting an HTTPS connection failed.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    drop(permit);
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "An HTTPS handshake failed."),
                Err(_) => tracing::debug!(%peer, "An HTTPS handshake timed out."),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accepting task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
