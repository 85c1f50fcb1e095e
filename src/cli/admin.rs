//! The binary's own client for the admin listener (`dynamo-cache admin`, `dynamo-cache
//! healthcheck`), for images without a shell or curl. It finds the listener, its scheme and
//! its token the way `serve` does: flags, then environment variables, then `--config`.
//!
//! Over https it takes whatever certificate is presented (the handshake's signatures are still
//! checked): it talks to the proxy on its own host, which has no name to check a certificate
//! against.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;

/// How long one admin request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where a running proxy's admin listener is, and how to talk to it.
#[derive(Debug, Clone)]
pub struct AdminTarget {
    /// `http(s)://HOST:PORT`, an unspecified address (0.0.0.0) turned into loopback.
    pub base: String,
    /// The bearer token, when the proxy has one.
    token: Option<String>,
}

impl AdminTarget {
    /// From `--config FILE` (if given), then the flags that override it.
    pub fn resolve(
        config: Option<&Path>,
        admin: Option<SocketAddr>,
        https: bool,
        token_file: Option<&Path>,
    ) -> Result<AdminTarget, String> {
        let config = match config {
            Some(path) => Config::load(path).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        let addr = admin.unwrap_or(config.admin_listen);
        let https = https || (config.tls.admin && config.tls.cert_file.is_some());
        let host = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let token_file: Option<PathBuf> = token_file
            .map(Path::to_path_buf)
            .or(config.auth.admin_token_file);
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("admin token file {}: {e}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(AdminTarget {
            base: format!(
                "{}://{}",
                if https { "https" } else { "http" },
                SocketAddr::new(host, addr.port())
            ),
            token,
        })
    }

    /// Sends `method path` and reads the answer: its status and body.
    pub async fn call(&self, method: Method, path: &str) -> Result<(StatusCode, Bytes), String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::net::tls::probe_client_config())
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {} s", TIMEOUT.as_secs()))?
    }
}

/// The path of a flush: everything, or one table (name or ARN, percent-encoded).
pub fn flush_path(table: Option<&str>) -> String {
    match table {
        None => "/cache/flush".into(),
        Some(table) => format!(
            "/cache/flush?table={}",
            percent_encoding::utf8_percent_encode(table, percent_encoding::NON_ALPHANUMERIC)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listener_is_reached_on_loopback_and_tls_follows_the_config() {
        let target =
            AdminTarget::resolve(None, Some("0.0.0.0:9464".parse().unwrap()), false, None).unwrap();
        assert_eq!(target.base, "http://127.0.0.1:9464");
        let target =
            AdminTarget::resolve(None, Some("[::]:9".parse().unwrap()), true, None).unwrap();
        assert_eq!(target.base, "https://[::1]:9");
    }

    #[test]
    fn flush_paths_encode_table_arns() {
        assert_eq!(flush_path(None), "/cache/flush");
        assert_eq!(
            flush_path(Some("arn:aws:dynamodb:us-east-1:1:table/t")),
            "/cache/flush?table=arn%3Aaws%3Adynamodb%3Aus%2Deast%2D1%3A1%3Atable%2Ft"
        );
    }
}
