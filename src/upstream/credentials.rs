//! The proxy's own AWS credentials, from the standard chain (env, profile, web identity/IRSA,
//! ECS, IMDS), cached and refreshed ahead of expiry so that no request waits on, or fails
//! because of, a rotation.

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

/// Refresh this long before the credentials expire, so requests in flight never carry an
/// expired token; for short-lived credentials, once half their life has passed.
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// Cached credentials with single-flight refresh.
pub struct CredentialCache {
    /// Where fresh credentials come from.
    provider: SharedCredentialsProvider,
    /// What the last successful refresh returned (cheap to clone: `Arc` inside), and how early
    /// before their expiry to replace them.
    current: RwLock<Option<(Credentials, Duration)>>,
    /// Held by the one task refreshing, so a burst of requests triggers one provider call.
    refreshing: tokio::sync::Mutex<()>,
}

impl CredentialCache {
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialCache {
            provider,
            current: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The provider, for the SDK client the proxy uses for its own calls (DescribeTable).
    pub fn provider(&self) -> SharedCredentialsProvider {
        self.provider.clone()
    }

    /// Credentials valid for at least a little while, refreshing them first when needed.
    pub async fn get(&self) -> Result<Credentials, String> {
        if let Some(creds) = self.fresh(None) {
            return Ok(creds);
        }
        let _guard = self.refreshing.lock().await;
        // Another task may have refreshed while we waited.
        if let Some(creds) = self.fresh(None) {
            return Ok(creds);
        }
        match self.provider.provide_credentials().await {
            Ok(creds) => {
                let life = creds
                    .expiry()
                    .and_then(|e| e.duration_since(SystemTime::now()).ok())
                    .unwrap_or(Duration::MAX);
                let ahead = REFRESH_AHEAD.min(life / 2);
                *self.current.write().expect("lock poisoned") = Some((creds.clone(), ahead));
                Ok(creds)
            }
            Err(err) => {
                // A failed early refresh is not a failed request: keep using what still works.
                if let Some(creds) = self.fresh(Some(Duration::ZERO)) {
                    tracing::warn!(error = %DisplayChain(&err), "credential refresh failed; using current credentials until they expire");
                    return Ok(creds);
                }
                Err(DisplayChain(&err).to_string())
            }
        }
    }

    /// Whether credentials have been loaded and are not expired (for readiness).
    pub fn is_loaded(&self) -> bool {
        self.fresh(Some(Duration::ZERO)).is_some()
    }

    /// The current credentials if they expire more than `margin` from now (`None` = the
    /// refresh margin they were issued with).
    fn fresh(&self, margin: Option<Duration>) -> Option<Credentials> {
        let current = self.current.read().expect("lock poisoned");
        let (creds, ahead) = current.as_ref()?;
        let margin = margin.unwrap_or(*ahead);
        match creds.expiry() {
            Some(expiry) if expiry <= SystemTime::now() + margin => None,
            _ => Some(creds.clone()),
        }
    }
}

/// Formats an error with its whole cause chain, as operators need to see it.
pub(crate) struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{error::CredentialsError, future};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Hands out credentials that expire `lifetime` after they are issued, counting calls.
    #[derive(Debug)]
    struct Rotating {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
        fail: bool,
    }

    impl ProvideCredentials for Rotating {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail && n > 0 {
                return future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                    "provider down",
                )));
            }
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                Some("token".into()),
                Some(SystemTime::now() + self.lifetime),
                "test",
            )))
        }
    }

    fn cache(lifetime: Duration, fail: bool) -> (CredentialCache, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = Rotating {
            calls: calls.clone(),
            lifetime,
            fail,
        };
        (
            CredentialCache::new(SharedCredentialsProvider::new(provider)),
            calls,
        )
    }

    #[tokio::test]
    async fn long_lived_credentials_are_fetched_once() {
        let (cache, calls) = cache(Duration::from_secs(3600), false);
        assert!(!cache.is_loaded());
        for _ in 0..10 {
            assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(cache.is_loaded());
    }

    #[tokio::test]
    async fn short_lived_credentials_are_refreshed_after_half_their_life() {
        let (cache, calls) = cache(Duration::from_millis(400), false);
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID0");
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID0");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_early_refresh_keeps_unexpired_credentials() {
        let (cache, _) = cache(Duration::from_millis(400), true);
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID0");
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The refresh fails, but AKID0 is still valid for a while.
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID0");
    }
}
