//! Single flight: concurrent misses on one key share one upstream read.
//!
//! Every participant calls [`Flights::run`] with the same fetch; one runs it, the rest wait for
//! its result. If the one running is cancelled (its client went away), a waiter takes over, so
//! nobody waits on a read that will never finish.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// In-flight reads by key.
pub(super) struct Flights<K, V> {
    running: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    pub(super) fn new() -> Self {
        Flights {
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The result of `fetch` for `key`, run once for all concurrent callers. The `bool` is
    /// `true` when this caller shared another's read (a coalesced miss).
    pub(super) async fn run<F, Fut>(&self, key: &K, fetch: F) -> (V, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut running = self.running.lock().expect("lock poisoned");
            running
                .entry(key.clone())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        // Retires the flight when this caller leaves, finished or cancelled (see `Retire`).
        let _retire = Retire {
            running: &self.running,
            key,
            cell: &cell,
        };
        let mut ran = false;
        let value = cell
            .get_or_init(|| {
                ran = true;
                fetch()
            })
            .await
            .clone();
        (value, !ran)
    }

    /// Flights under way (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.running.lock().expect("lock poisoned").len()
    }
}

/// Removes a flight from the map when a caller leaves it: the first to finish retires it
/// (later callers start afresh, and usually find the value cached by then), and so does the
/// last caller of a read nobody finished (its client went away), so an abandoned flight never
/// stays in the map.
struct Retire<'a, K: Hash + Eq, V> {
    running: &'a Mutex<HashMap<K, Arc<OnceCell<V>>>>,
    key: &'a K,
    cell: &'a Arc<OnceCell<V>>,
}

impl<K: Hash + Eq, V> Drop for Retire<'_, K, V> {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let ours = running
            .get(self.key)
            .is_some_and(|c| Arc::ptr_eq(c, self.cell));
        // Held by the map and by this caller alone: nobody else is waiting on it.
        let abandoned = Arc::strong_count(self.cell) <= 2;
        if ours && (self.cell.initialized() || abandoned) {
            running.remove(self.key);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (flights, fetches) = (flights.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run(&7, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        42
                    })
                    .await
            }));
        }
        let mut coalesced = 0;
        for task in tasks {
            let (value, shared) = task.await.unwrap();
            assert_eq!(value, 42);
            coalesced += shared as usize;
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(coalesced, 9);
        assert!(flights.running.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_leader_is_replaced_by_a_waiter() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(&1, || async {
                        std::future::pending::<()>().await;
                        0
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(&1, || async { 5 }).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert_eq!(waiter.await.unwrap().0, 5);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_flight_whose_only_caller_left_is_forgotten() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        for key in 0..100 {
            let flights = flights.clone();
            let caller = tokio::spawn(async move {
                flights
                    .run(&key, || async {
                        std::future::pending::<()>().await;
                        0
                    })
                    .await
            });
            tokio::task::yield_now().await;
            caller.abort();
            let _ = caller.await;
        }
        assert_eq!(flights.len(), 0, "abandoned flights stay in memory");
    }
}
