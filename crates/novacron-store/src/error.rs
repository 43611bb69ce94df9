//! [`StoreError`]: why a command was refused or the database failed.
//!
//! The refusals ([`StoreError::NotFound`] to [`StoreError::Invalid`]) come from validating a
//! [`Command`](crate::Command) against the current state and change nothing; their messages are
//! written for API users. The rest are storage failures, whose cause sits in `source()`.

use novacron_model::{ByteSize, Name, VmId, VmState};

/// Why [`Store::apply`](crate::Store::apply) refused a command, or why a store could not be
/// opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record the command names does not exist.
    #[error("{kind} {key} not found")]
    NotFound {
        /// Kind of record: `tenant`, `token`, `image`, `vm`, `operation`.
        kind: &'static str,
        /// Its name or id (`tenant/name` for a VM looked up by name).
        key: String,
    },
    /// A record with the same identity already exists.
    #[error("{kind} {key} already exists")]
    AlreadyExists {
        /// Kind of record: `image`, `vm`, `token secret`.
        kind: &'static str,
        /// The identity in use: a name, an id, or `tenant/name` for a VM.
        key: String,
    },
    /// Creating the VM would take its tenant over one of its limits.
    #[error(
        "tenant {tenant}: {resource} quota exceeded: limit {}, in use {}, requested {}",
        amount(.resource, *.limit),
        amount(.resource, *.used),
        amount(.resource, *.requested)
    )]
    QuotaExceeded {
        /// The tenant.
        tenant: Name,
        /// Which limit: `vms`, `vcpus` or `memory`.
        resource: &'static str,
        /// The tenant's limit (memory in bytes).
        limit: u64,
        /// What the tenant holds now (memory in bytes).
        used: u64,
        /// What the VM asks for (memory in bytes).
        requested: u64,
    },
    /// The VM is not in the state the command expected: someone else changed it first.
    #[error("vm {vm} is {actual}, expected {expected}")]
    Conflict {
        /// The VM.
        vm: VmId,
        /// The state the command expected.
        expected: VmState,
        /// The state the VM is in.
        actual: VmState,
    },
    /// The record is still referred to and cannot be deleted.
    #[error("{kind} {key} is in use by {by}")]
    InUse {
        /// Kind of record: `tenant`, `image`.
        kind: &'static str,
        /// Its name.
        key: String,
        /// What uses it (`vm acme/web-1`, `2 vms and 1 token`).
        by: String,
    },
    /// An update tried to change a field that is fixed when the VM is created.
    #[error("a vm's {field} cannot be changed after it is created")]
    Immutable {
        /// The field: `tenant`, `name`, `spec`, `created_at`.
        field: &'static str,
    },
    /// The command carries a value the store does not accept (a VM spec out of range, an empty
    /// token hash).
    #[error("invalid request: {message}")]
    Invalid {
        /// What is wrong, for the user.
        message: String,
    },
    /// The database could not be opened, read or written. (Boxed: redb's error is large and
    /// every `Result` of the store would carry its size.)
    #[error("database error")]
    Database(#[source] Box<redb::Error>),
    /// A record in the database does not decode (or is stored under the wrong key).
    #[error("corrupt record in table {table} at key {key}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// What did not decode.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded for writing.
    #[error("could not encode the record for table {table} at key {key}")]
    Encode {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The database was written by a newer version with a schema this one does not know.
    #[error(
        "database schema version {found} is newer than the newest this build supports \
         ({supported}); run a newer novacron"
    )]
    SchemaTooNew {
        /// The database's schema version.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
}

impl StoreError {
    /// Whether the command was refused (nothing was changed and retrying the same command
    /// against the same state fails the same way), as opposed to the storage failing.
    #[must_use]
    pub const fn is_refusal(&self) -> bool {
        match self {
            Self::NotFound { .. }
            | Self::AlreadyExists { .. }
            | Self::QuotaExceeded { .. }
            | Self::Conflict { .. }
            | Self::InUse { .. }
            | Self::Immutable { .. }
            | Self::Invalid { .. } => true,
            Self::Database(_)
            | Self::Corrupt { .. }
            | Self::Encode { .. }
            | Self::SchemaTooNew { .. } => false,
        }
    }
}

/// Shows a quota amount: memory as a size (`512M`), counts as numbers.
fn amount(resource: &str, n: u64) -> String {
    if resource == "memory" {
        ByteSize(n).to_string()
    } else {
        n.to_string()
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Database(Box::new(e.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_message_reads_limit_use_and_request() {
        let e = StoreError::QuotaExceeded {
            tenant: Name::new("acme").unwrap(),
            resource: "vcpus",
            limit: 8,
            used: 6,
            requested: 4,
        };
        assert_eq!(
            e.to_string(),
            "tenant acme: vcpus quota exceeded: limit 8, in use 6, requested 4"
        );
    }

    #[test]
    fn quota_message_shows_memory_as_sizes() {
        let e = StoreError::QuotaExceeded {
            tenant: Name::new("acme").unwrap(),
            resource: "memory",
            limit: 1 << 30,
            used: 768 << 20,
            requested: 512 << 20,
        };
        assert_eq!(
            e.to_string(),
            "tenant acme: memory quota exceeded: limit 1G, in use 768M, requested 512M"
        );
    }

    #[test]
    fn conflict_message_names_both_states() {
        let vm = VmId::random();
        let e = StoreError::Conflict {
            vm,
            expected: VmState::Stopped,
            actual: VmState::Running,
        };
        assert_eq!(
            e.to_string(),
            format!("vm {vm} is running, expected stopped")
        );
        assert!(e.is_refusal());
    }

    #[test]
    fn storage_errors_keep_their_cause() {
        let e = StoreError::from(redb::Error::DatabaseAlreadyOpen);
        assert!(!e.is_refusal());
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(source.contains("already open"), "{source}");
    }
}
