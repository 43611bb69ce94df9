//! [`MemStore`]: a [`Store`] that keeps nothing on disk, for unit tests of the crates above.

use crate::cell::{StateCell, delegate_reads};
use crate::{Command, State, Store, StoreError};
use std::sync::{Mutex, PoisonError};

/// A [`Store`] held in memory only. It validates and applies commands exactly as
/// [`RedbStore`](crate::RedbStore) does (same [`State`]) and passes the same suite, minus
/// persistence.
#[derive(Debug, Default)]
pub struct MemStore {
    writer: Mutex<()>,
    cell: StateCell,
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `state`.
    #[must_use]
    pub fn with_state(state: State) -> Self {
        Self {
            writer: Mutex::new(()),
            cell: StateCell::new(state),
        }
    }
}

impl Store for MemStore {
    fn apply(&self, command: Command) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let writes = self.cell.read().plan(command)?;
        self.cell.commit(writes);
        Ok(())
    }

    delegate_reads!(cell);
}

#[cfg(test)]
mod tests {
    use super::MemStore;
    use crate::cell::delegate_reads;
    use crate::testing::Suite;
    use crate::{Command, Store, StoreError};

    /// A broken store: it accepts every command it should refuse (and changes nothing).
    struct Lenient {
        inner: MemStore,
    }

    impl Store for Lenient {
        fn apply(&self, command: Command) -> Result<(), StoreError> {
            match self.inner.apply(command) {
                Err(e) if e.is_refusal() => Ok(()),
                other => other,
            }
        }

        delegate_reads!(inner);
    }

    #[test]
    fn the_suite_fails_a_store_that_accepts_what_it_should_refuse() {
        let failures = Suite::test_all(|| {
            Ok(Lenient {
                inner: MemStore::new(),
            })
        })
        .unwrap_err();
        let failed: Vec<&str> = failures.0.iter().map(|f| f.case).collect();
        assert!(
            failed.contains(&"concurrent_creates_never_exceed_the_quota"),
            "{failures}"
        );
        assert!(
            failed.contains(&"update_vm_refuses_a_stale_state"),
            "{failures}"
        );
        assert!(
            !failed.contains(&"tenants_are_listed_by_name"),
            "{failures}"
        );
        let text = failures.to_string();
        assert!(text.contains("src/testing/cases/"), "{text}");
    }

    #[test]
    fn mem_store_passes_the_conformance_suite() {
        if let Err(failures) = Suite::test_all(|| Ok(MemStore::new())) {
            panic!("{failures}");
        }
    }
}
