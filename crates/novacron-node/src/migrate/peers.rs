//! API clients of the peer nodes: one per peer for the daemon's life, whose connection is kept
//! open. A migration's first calls to its destination (the image's offer, the prepare) would
//! otherwise open a new connection, a TCP and a TLS handshake: two round trips of the link
//! before the destination hears of the migration (300 ms over 150 ms).

use novacron_api::client::{Client, TlsClientOptions};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often each peer gets a health check: an idle connection is closed after a while (by
/// the client's pool after 90 s, by a server or a middlebox possibly sooner).
const WARM_EVERY: Duration = Duration::from_secs(10);
/// The first wait before a peer that did not answer is asked again, doubled at each failure up
/// to [`WARM_EVERY`]: nodes start in any order, and a migration may follow soon after.
const RETRY_FIRST: Duration = Duration::from_millis(500);

/// The clients of the peers in a node's configuration, and the task that keeps them warm.
pub(crate) struct Peers {
    /// By peer name: its client, or why none could be made of its URL.
    clients: BTreeMap<String, Result<Client, String>>,
    warm: tokio::task::JoinHandle<()>,
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.warm.abort();
    }
}

impl Peers {
    /// Makes a client of each peer (`peers`: name to API base URL) authenticated by `tls`,
    /// and starts checking each one's health every [`WARM_EVERY`], from now on.
    pub(crate) fn start(peers: &BTreeMap<String, String>, tls: &TlsClientOptions) -> Self {
        let clients: BTreeMap<String, Result<Client, String>> = peers
            .iter()
            .map(|(name, url)| {
                let client = Client::with_tls(url, "", tls)
                    .map_err(|e| format!("cannot reach peer {name} at {url}: {e}"));
                (name.clone(), client)
            })
            .collect();
        let warmed: Vec<(String, Client)> = clients
            .iter()
            .filter_map(|(name, c)| {
                let c = c.as_ref().ok()?.clone().with_timeout(WARM_EVERY);
                Some((name.clone(), c))
            })
            .collect();
        let warm = tokio::spawn(keep_warm(warmed));
        Self { clients, warm }
    }

    /// The client of peer `name` (which the configuration names).
    pub(crate) fn client(&self, name: &str) -> Result<Client, String> {
        match self.clients.get(name) {
            Some(Ok(client)) => Ok(client.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("no peer node named {name:?}")),
        }
    }
}

/// Checks the health of every peer, each on its own: every [`WARM_EVERY`] while it answers,
/// sooner after it did not (see [`retry_wait`]). A peer that does not answer is only logged
/// (at debug: a peer may be down for long, and the migration that needs it says so).
async fn keep_warm(peers: Vec<(String, Client)>) {
    let mut checks = tokio::task::JoinSet::new();
    for (name, client) in peers {
        checks.spawn(async move {
            let mut failing = None;
            loop {
                let answered = match client.health().await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(peer = %name, error = %e, "peer did not answer its health check");
                        false
                    }
                };
                failing = retry_wait(failing, answered);
                tokio::time::sleep(failing.unwrap_or(WARM_EVERY)).await;
            }
        });
    }
    while checks.join_next().await.is_some() {}
}

/// The wait before a peer's next health check after one that failed: `None` once it
/// answered (the next is [`WARM_EVERY`] away); else [`RETRY_FIRST`] after the first failure in
/// a row, doubled at each one after it (`failing`: the wait after the one before), up to
/// [`WARM_EVERY`].
fn retry_wait(failing: Option<Duration>, answered: bool) -> Option<Duration> {
    if answered {
        return None;
    }
    Some(failing.map_or(RETRY_FIRST, |wait| (wait * 2).min(WARM_EVERY)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_asked_again_sooner_then_less_often() {
        let ms = Duration::from_millis;
        assert_eq!(retry_wait(None, true), None);
        assert_eq!(retry_wait(None, false), Some(ms(500)));
        assert_eq!(retry_wait(Some(ms(500)), false), Some(ms(1000)));
        assert_eq!(retry_wait(Some(ms(8000)), false), Some(WARM_EVERY));
        assert_eq!(retry_wait(Some(WARM_EVERY), false), Some(WARM_EVERY));
        assert_eq!(retry_wait(Some(ms(2000)), true), None);
    }
}
