//! The webhook sink: each committed micro-batch's alerts (or a commit's alert events) POSTed as one JSON
//! array of their messages (`Content-Type: application/json`), in chunks of at most [`MAX_ALERTS_PER_REQUEST`]. Any 2xx
//! answer acknowledges the request; another status, a timeout or a refused connection fails the
//! attempt and the batch is sent again.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use super::Outgoing;
use crate::error::{Error, Result};

/// Name of the sink in logs, metrics and its checkpoint.
pub(super) const NAME: &str = "webhook";

/// Most alerts in one request: a backlog after an outage goes out in bounded bodies.
const MAX_ALERTS_PER_REQUEST: usize = 500;

pub(super) struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
    authorization: Option<HeaderValue>,
}

fn failed(reason: impl std::fmt::Display) -> Error {
    Error::Delivery { sink: NAME, reason: reason.to_string() }
}

impl WebhookSink {
    pub(super) fn new(url: &str, token: &str, timeout: Duration) -> Result<WebhookSink> {
        let url = reqwest::Url::parse(url).map_err(|e| Error::Config(format!("alerts.webhook_url {url:?}: {e}")))?;
        if url.scheme() == "http"
            && !url.host_str().is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]")
        {
            tracing::warn!(url = %url, "alerts.webhook_url is plain http: alerts (patient ids) cross the network unencrypted; use https.");
        }
        // reqwest is built without a crypto provider of its own: use ring, as Flight SQL's TLS does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("building the webhook client: {e}")))?;
        let authorization = match token {
            "" => None,
            token => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::Config("alerts.webhook_token_secret holds characters a header cannot carry".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(WebhookSink { client, url, authorization })
    }

    pub(super) async fn send(&mut self, messages: &[Outgoing]) -> Result<()> {
        for chunk in messages.chunks(MAX_ALERTS_PER_REQUEST) {
            let bodies: Vec<&serde_json::Value> = chunk.iter().map(|m| &m.body).collect();
            let body = serde_json::to_vec(&bodies).map_err(|e| failed(format!("encoding alerts: {e}")))?;
            let mut request = self.client.post(self.url.clone()).header(CONTENT_TYPE, "application/json").body(body);
            if let Some(authorization) = &self.authorization {
                request = request.header(AUTHORIZATION, authorization.clone());
            }
            let response = request.send().await.map_err(|e| failed(format!("POST {}: {e}", self.url)))?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                return Err(failed(format!("POST {} answered {status}: {text}", self.url)));
            }
        }
        Ok(())
    }
}
