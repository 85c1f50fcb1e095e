//! The HTTP client of every AWS SDK client the proxy builds (table descriptions, Streams, the
//! credential and region chains, the bench): the data path's own hyper client and rustls (ring)
//! connector with the same web PKI roots, so the binary carries one HTTP stack, not two.
//!
//! The SDK asks for a connector per set of timeouts ([`HttpConnectorSettings`]); each is made
//! once and kept, with its pool. A connect timeout bounds connecting (and the TLS handshake);
//! a read timeout bounds the wait for the response's head. The SDK's own operation timeouts
//! and retries sit above this.

use std::error::Error as StdError;
use std::sync::Mutex;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::body::SdkBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;

/// The one [`SharedHttpClient`] of the process.
pub fn sdk_http_client() -> SharedHttpClient {
    static CLIENT: std::sync::OnceLock<SharedHttpClient> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| SharedHttpClient::new(SdkClient::default()))
        .clone()
}

/// Connectors by (connect timeout, read timeout).
#[derive(Debug, Default)]
struct SdkClient {
    made: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

impl HttpClient for SdkClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, connector)) = made.iter().find(|(k, _)| *k == key) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(SdkConnector::new(key));
        made.push((key, connector.clone()));
        connector
    }
}

#[derive(Debug)]
struct SdkConnector {
    client: Client<HttpsConnector<TcpConnector>, SdkBody>,
    read_timeout: Option<Duration>,
}

impl SdkConnector {
    fn new((connect_timeout, read_timeout): Timeouts) -> SdkConnector {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        SdkConnector {
            client: super::pooled(super::https_connector(tcp)),
            read_timeout,
        }
    }
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let sent = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answered = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|elapsed| ConnectorError::timeout(elapsed.into()))?,
                None => sent.await,
            };
            let response = answered.map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|err| ConnectorError::other(err.into(), None))
        })
    }
}

/// Failing to connect, or a connection that broke, is I/O, which the SDK retries; a timeout
/// inside the connector is a timeout; anything else is not retried.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    let mut io = err.is_connect();
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_timeout() {
                return ConnectorError::timeout(err.into());
            }
            io |= hyper.is_closed() || hyper.is_canceled() || hyper.is_incomplete_message();
        }
        io |= cause.is::<std::io::Error>();
        source = cause.source();
    }
    if io {
        ConnectorError::io(err.into())
    } else {
        ConnectorError::other(err.into(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn get(url: &str) -> HttpRequest {
        let request = http::Request::builder()
            .uri(url)
            .body(SdkBody::empty())
            .unwrap();
        HttpRequest::try_from(request).unwrap()
    }

    #[tokio::test]
    async fn answers_come_back_whole_and_a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // The first connection is answered; the second is read and never answered.
            let mut silent = Vec::new();
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                if silent.is_empty() && buf.starts_with(b"GET /answer") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                        .await;
                }
                silent.push(socket);
            }
        });
        let connector = SdkConnector::new((
            Some(Duration::from_secs(1)),
            Some(Duration::from_millis(300)),
        ));
        let response = connector
            .call(get(&format!("http://{addr}/answer")))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.body().bytes(), None, "streamed, not buffered");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");

        let call = connector.call(get(&format!("http://{addr}/silent")));
        let err = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the read timeout ends the call")
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_io_which_the_sdk_retries() {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let connector = SdkConnector::new((Some(Duration::from_secs(1)), None));
        let err = connector
            .call(get(&format!("http://{addr}/")))
            .await
            .unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }
}
