//! [`RedbStore`]: the single-node [`Store`], a redb database file with every record also held
//! in memory.
//!
//! ```text
//!   apply(command) ── writer mutex ──► plan against memory ──► one redb write transaction
//!                                                               (durable commit)
//!                                                                     │ ok
//!   reads ◄── RwLock<State> ◄───────────── commit to memory ◄─────────┘
//! ```
//!
//! Memory changes only after the transaction is durable, so a read never shows what a crash
//! would lose, and a failed commit changes nothing. Reads never touch the file.

mod tables;

#[cfg(test)]
mod tests;

use crate::cell::{StateCell, delegate_reads};
use crate::{Command, Store, StoreError};
use redb::{Database, Durability};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

pub use tables::SCHEMA_VERSION;

/// A [`Store`] kept in a redb database file and served from memory.
///
/// Only one `RedbStore` may have a given file open at a time (redb locks it).
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    /// Serializes `apply`: plan, persist and commit happen as one step.
    writer: Mutex<()>,
    cell: StateCell,
}

impl RedbStore {
    /// Opens the database at `path`, creating it (not its directory) if missing, and loads
    /// every record into memory.
    ///
    /// # Errors
    /// [`StoreError::Database`] if the file cannot be created, locked or read (another process
    /// has it open, say); [`StoreError::SchemaTooNew`] if a newer build wrote it;
    /// [`StoreError::Corrupt`] naming the table and key of a record that does not decode.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        // Dropping `txn` on an error aborts it.
        tables::prepare(&txn)?;
        txn.commit()?;
        let state = tables::load(&db.begin_read()?)?;
        tracing::info!(
            path = %path.display(),
            tenants = state.tenants().count(),
            images = state.images().count(),
            vms = state.vm_count(),
            "store opened"
        );
        Ok(Self {
            db,
            path: path.to_owned(),
            writer: Mutex::new(()),
            cell: StateCell::new(state),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store for RedbStore {
    fn apply(&self, command: Command) -> Result<(), StoreError> {
        // A poisoned writer lock is harmless: the state changes only in `StateCell::commit`,
        // after a durable transaction, and that does not panic.
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let name = command.name();
        let writes = self.cell.read().plan(command).inspect_err(|e| {
            tracing::debug!(command = name, error = %e, "command refused");
        })?;
        if !writes.is_empty() {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate);
            // Dropping `txn` on an error aborts it.
            tables::persist(&txn, &writes)?;
            txn.commit()?;
        }
        tracing::debug!(command = name, writes = writes.len(), "command applied");
        self.cell.commit(writes);
        Ok(())
    }

    delegate_reads!(cell);
}
