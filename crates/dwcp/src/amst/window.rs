//! A window the sender's owner may narrow or widen while a transfer runs: for a stream whose
//! bytes in flight have a cost beyond memory (a live migration, where everything DWCP holds
//! must still cross the link once the guest is stopped).
//!
//! The window is the sender's permit semaphore. Narrowing takes permits out as acknowledgements
//! free them (it never takes back bytes already sent); widening adds permits at once.

use std::sync::Arc;

use tokio::sync::{Semaphore, watch};

/// Follows `limit` until it closes or the transfer ends, keeping `permits` at the latest
/// limit, clamped to `floor..=ceiling` (`initial` is the window the semaphore started with).
pub(crate) async fn follow(
    mut limit: watch::Receiver<u64>,
    permits: Arc<Semaphore>,
    initial: u64,
    floor: u64,
    ceiling: u64,
) {
    let mut current = initial;
    loop {
        let target = (*limit.borrow_and_update()).clamp(floor, ceiling.max(floor));
        if target < current {
            let take = u32::try_from(current - target).unwrap_or(u32::MAX);
            match permits.acquire_many(take).await {
                Ok(p) => p.forget(),
                // Closed: the transfer ended.
                Err(_) => return,
            }
            current -= u64::from(take);
            // Taking may have waited: look at the limit again before waiting for a change.
            continue;
        }
        if target > current {
            permits.add_permits(usize::try_from(target - current).unwrap_or(usize::MAX >> 4));
            current = target;
        }
        if limit.changed().await.is_err() || permits.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn narrowing_waits_for_free_permits_and_widening_adds_them() {
        let permits = Arc::new(Semaphore::new(100));
        let held = Arc::clone(&permits).acquire_many_owned(80).await.unwrap();
        let (tx, rx) = watch::channel(100);
        let task = tokio::spawn(follow(rx, Arc::clone(&permits), 100, 10, 100));
        tx.send(30).unwrap();
        // 20 free now: all taken; 50 more wait for the held ones.
        tokio::time::timeout(Duration::from_secs(5), async {
            while permits.available_permits() != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), async {
            while permits.available_permits() != 30 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        // Below the floor is the floor; above the ceiling is the ceiling.
        tx.send(1).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while permits.available_permits() != 10 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        tx.send(1_000).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while permits.available_permits() != 100 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
