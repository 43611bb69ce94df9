//! The node's event sequence: numbered, timestamped, broadcast to every subscriber.

use novacron_model::{Event, EventKind, Name, Timestamp};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

/// Events a slow subscriber may fall behind by before it is told it lagged.
pub const EVENT_BUFFER: usize = 4096;

/// Publishes events in order.
#[derive(Debug)]
pub struct EventBus {
    seq: AtomicU64,
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with no subscribers.
    #[must_use]
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            seq: AtomicU64::new(0),
            tx,
        }
    }

    /// Publishes `kind` for `tenant` (`None`: node-wide) and returns its sequence number.
    pub fn publish(&self, tenant: Option<Name>, kind: EventKind) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        tracing::debug!(seq, ?kind, "event");
        // No subscriber is not an error: events are for whoever listens now.
        let _ = self.tx.send(Event {
            seq,
            time: Timestamp::now(),
            tenant,
            kind,
        });
        seq
    }

    /// Every event from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
