//! Exit statuses scripts can rely on, and the one function that picks the status of any
//! error of the `novacron` command (API commands and `dwcp` alike).

use novacron_api::client::ClientError;
use novacron_model::{OperationId, OperationKind};
use std::time::Duration;

/// Something else failed (a local file, an unexpected answer, a server-side fault).
pub const OTHER: u8 = 1;
/// Bad or contradictory arguments (clap uses the same status).
pub const USAGE: u8 = 2;
/// The server could not be reached, or the connection was lost.
pub const UNREACHABLE: u8 = 3;
/// Authentication or authorization refused (401, 403), or no token to present.
pub const REFUSED: u8 = 4;
/// No such VM, image, tenant or operation (404).
pub const NOT_FOUND: u8 = 6;
/// Conflict (409): the name exists, the state does not allow it, the quota is full.
pub const CONFLICT: u8 = 7;
/// Invalid input (400, 413, 415, 422).
pub const INVALID: u8 = 8;
/// The operation ran and failed.
pub const FAILED: u8 = 9;
/// Timed out waiting for the operation, or for the server's answer.
pub const TIMED_OUT: u8 = 10;
/// Interrupted (Ctrl-C) while waiting; the operation goes on.
pub const INTERRUPTED: u8 = 130;

/// The exit statuses as `--help` and the README list them.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    success
  1    other error
  2    usage error
  3    server unreachable, or the connection was lost
  4    authentication or authorization refused (401, 403), or no token
  6    not found (404)
  7    conflict (409): exists already, wrong state, quota full
  8    invalid input (400, 413, 415, 422)
  9    the operation ran and failed
  10   timed out waiting for the operation or the server
  130  interrupted while waiting (the operation goes on)";

/// Failures of the API commands themselves, beside those of the client.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An operation ended `failed`.
    #[error("{kind} of {target} failed: {error}")]
    OperationFailed {
        /// What it did.
        kind: OperationKind,
        /// What it acted on, as the user named it.
        target: String,
        /// The operation's `error`.
        error: String,
    },
    /// The operation did not end within the wait.
    #[error(
        "{kind} of {target} still running after {} s (operation {id}; see `--wait-timeout`)",
        .after.as_secs()
    )]
    WaitTimedOut {
        /// What it does.
        kind: OperationKind,
        /// What it acts on.
        target: String,
        /// The operation.
        id: OperationId,
        /// How long the command waited.
        after: Duration,
    },
    /// Ctrl-C while waiting.
    #[error("stopped waiting; {kind} of {target} goes on as operation {id}")]
    Interrupted {
        /// What it does.
        kind: OperationKind,
        /// What it acts on.
        target: String,
        /// The operation.
        id: OperationId,
    },
    /// No token from any source.
    #[error("{0}")]
    NoToken(String),
    /// Arguments that do not go together.
    #[error("{0}")]
    Usage(String),
}

/// The exit status for `err`: the first [`ClientError`] or [`CliError`] in its chain decides;
/// otherwise the `dwcp` mapping (3 unreachable or lost, 4 refused, 5 integrity, 1 other).
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return for_client(e);
        }
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return for_cli(e);
        }
    }
    crate::dwcp_cmd::exit_code_for(err)
}

fn for_client(e: &ClientError) -> u8 {
    match e {
        ClientError::Connect { .. } | ClientError::Transport { .. } => UNREACHABLE,
        ClientError::Api { status, .. } => match status {
            401 | 403 => REFUSED,
            404 => NOT_FOUND,
            409 => CONFLICT,
            400 | 413 | 415 | 422 => INVALID,
            _ => OTHER,
        },
        ClientError::Timeout { .. } => TIMED_OUT,
        ClientError::Decode { .. }
        | ClientError::InvalidUrl { .. }
        | ClientError::Tls(_)
        | ClientError::InvalidToken
        | ClientError::Lagged { .. } => OTHER,
    }
}

fn for_cli(e: &CliError) -> u8 {
    match e {
        CliError::OperationFailed { .. } => FAILED,
        CliError::WaitTimedOut { .. } => TIMED_OUT,
        CliError::Interrupted { .. } => INTERRUPTED,
        CliError::NoToken(_) => REFUSED,
        CliError::Usage(_) => USAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;
    use novacron_api::client::api_error;

    fn code(e: impl std::error::Error + Send + Sync + 'static) -> u8 {
        // Context on top, as the commands add it.
        let r: anyhow::Result<()> = Err(anyhow::Error::new(e));
        exit_code_for(&r.context("could not do it").unwrap_err())
    }

    #[test]
    fn api_statuses_map_to_their_exit_codes() {
        for (status, want) in [
            (401, REFUSED),
            (403, REFUSED),
            (404, NOT_FOUND),
            (409, CONFLICT),
            (400, INVALID),
            (413, INVALID),
            (415, INVALID),
            (422, INVALID),
            (500, OTHER),
            (503, OTHER),
        ] {
            assert_eq!(code(api_error(status, b"")), want, "{status}");
        }
    }

    #[test]
    fn client_failures_map_to_their_exit_codes() {
        let after = Duration::from_secs(1);
        assert_eq!(code(ClientError::Timeout { after }), TIMED_OUT);
        assert_eq!(code(ClientError::InvalidToken), OTHER);
        assert_eq!(code(ClientError::Lagged { missed: 1 }), OTHER);
    }

    #[test]
    fn command_failures_map_to_their_exit_codes() {
        let id = OperationId::random();
        let kind = OperationKind::VmStart;
        let target = "web".to_owned();
        let failed = CliError::OperationFailed {
            kind,
            target: target.clone(),
            error: "qemu exited".into(),
        };
        assert_eq!(failed.to_string(), "vm_start of web failed: qemu exited");
        assert_eq!(code(failed), FAILED);
        let after = Duration::from_secs(3);
        let timed_out = CliError::WaitTimedOut {
            kind,
            target: target.clone(),
            id,
            after,
        };
        assert_eq!(code(timed_out), TIMED_OUT);
        assert_eq!(
            code(CliError::Interrupted { kind, target, id }),
            INTERRUPTED
        );
        assert_eq!(code(CliError::NoToken("x".into())), REFUSED);
        assert_eq!(code(CliError::Usage("x".into())), USAGE);
    }

    #[test]
    fn dwcp_errors_keep_their_exit_codes() {
        use dwcp::amst::SendError;
        let e = anyhow::Error::new(SendError::Integrity {
            sent: "a".into(),
            stored: "b".into(),
        });
        assert_eq!(exit_code_for(&e), 5);
        let e = anyhow::Error::new(SendError::Lost {
            acked: 0,
            reason: "x".into(),
        });
        assert_eq!(exit_code_for(&e), UNREACHABLE);
        let e = anyhow::Error::new(SendError::ResumeNeedsFile);
        assert_eq!(exit_code_for(&e), OTHER);
        assert_eq!(exit_code_for(&anyhow::anyhow!("plain")), OTHER);
    }
}
