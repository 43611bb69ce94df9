//! The commit to the destination, sent twice at once on two warm connections.
//!
//! Over a lossy link a lost segment of the commit, or of its answer, costs the stopped guest a
//! retransmission timeout: 200 ms and more, on top of the round trip (a migration back over
//! `intercontinental` waited 560 ms for an answer that left 4 ms after the guest ran). Two
//! copies on two connections are lost together far more rarely. The destination answers a
//! repeated commit with the first one's outcome, so either answer will do.

use novacron_api::client::{Client, ClientError};
use novacron_api::migration::PeerCommitted;
use novacron_model::OperationId;

/// Commits `migration` at the destination: twice at once (see [`commit_twice`]), and once
/// more should neither copy get an answer (a connection broken, no answer in time). An answer
/// to that last ask says nothing of when the guest ran: its times are left out, so the
/// downtime counts up to the answer's arrival.
pub(super) async fn commit(
    client: &Client,
    migration: OperationId,
) -> Result<PeerCommitted, ClientError> {
    match commit_twice(client, migration).await {
        Err(e) if e.status().is_none() => {
            tracing::warn!(%migration, error = %e, "no answer to the commit; asking once more");
            match client.peer_commit(migration).await {
                Ok(committed) => Ok(PeerCommitted {
                    running_after: None,
                    answered_after: None,
                    ..committed
                }),
                Err(again) => settle(e, Err(again)),
            }
        }
        answer => answer,
    }
}

/// Sends the commit twice at once and returns the first success, else the more telling
/// failure (see [`settle`]). Each copy takes a connection of its own from the client's pool:
/// the pool holds two warm ones (see [`keep_warm`]), and opens one should a copy find none.
async fn commit_twice(
    client: &Client,
    migration: OperationId,
) -> Result<PeerCommitted, ClientError> {
    let first = client.peer_commit(migration);
    let second = client.peer_commit(migration);
    tokio::pin!(first, second);
    tokio::select! {
        answer = &mut first => match answer {
            Ok(committed) => Ok(committed),
            Err(e) => settle(e, second.await),
        },
        answer = &mut second => match answer {
            Ok(committed) => Ok(committed),
            Err(e) => settle(e, first.await),
        },
    }
}

/// Two requests at once to the destination's health check: the client's pool keeps two
/// connections open for [`commit_twice`] (an idle one closes after a while, and a new one
/// costs the stopped guest two round trips of handshakes).
pub(super) async fn keep_warm(client: &Client) {
    let _ = tokio::join!(client.health(), client.health());
}

/// Of a copy's failure and the other copy's outcome: the other's success; else the
/// destination's answer (an HTTP status) over a failure to get one, and the first failure
/// when both are alike.
fn settle(
    failed: ClientError,
    other: Result<PeerCommitted, ClientError>,
) -> Result<PeerCommitted, ClientError> {
    match other {
        Ok(committed) => Ok(committed),
        Err(e) if failed.status().is_none() && e.status().is_some() => Err(e),
        Err(_) => Err(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16) -> ClientError {
        ClientError::Api {
            status,
            error: "conflict".to_owned(),
            message: "the stream failed".to_owned(),
            field: None,
        }
    }

    fn unreachable() -> ClientError {
        ClientError::Timeout {
            after: std::time::Duration::from_secs(150),
        }
    }

    #[test]
    fn settle_prefers_the_destination_answer_over_a_failure_to_get_one() {
        let e = settle(unreachable(), Err(refused(409))).unwrap_err();
        assert_eq!(e.status(), Some(409));
        let e = settle(refused(409), Err(unreachable())).unwrap_err();
        assert_eq!(e.status(), Some(409));
        let e = settle(refused(404), Err(refused(409))).unwrap_err();
        assert_eq!(e.status(), Some(404), "the first of two answers");
    }
}
