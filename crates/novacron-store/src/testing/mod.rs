//! The conformance suite every [`Store`] passes, and fixtures for tests that use a store.
//!
//! ```ignore
//! use novacron_store::testing::Suite;
//!
//! #[test]
//! fn my_store_conforms() {
//!     Suite::test_all(|| MyStore::new()).unwrap();
//! }
//! ```
//!
//! - [`Suite::test_all`]: every command's success and refusals, reads and their order, quota
//!   under concurrent creates, on a fresh store per case.
//! - [`Suite::test_durable`]: for stores kept on disk, that everything survives a reopen.
//! - [`MemStore`]: an in-memory [`Store`] for other crates' unit tests.
//! - [`fixtures`]: small valid records, and [`Dump`] to compare what two stores show.
//!
//! Cases return [`Failure`]s instead of panicking; a run lists every failed case.

mod check;
mod mem;

mod cases;
pub mod fixtures;

pub use check::{Failure, Failures};
pub use fixtures::{Dump, TenantDump};
pub use mem::MemStore;

pub(crate) use check::{ensure, ensure_eq, ensure_matches};

use crate::{Store, StoreError};
use std::path::Path;

/// One conformance case: runs against a fresh, empty store.
pub type Case = fn(&dyn Store) -> Result<(), Failure>;

/// One persistence case: gets a directory of its own and a function that opens the store kept
/// at a path in it (called again after the previous store is dropped).
pub type DurableCase =
    fn(&Path, &dyn Fn(&Path) -> Result<Box<dyn Store>, StoreError>) -> Result<(), Failure>;

/// Runs the conformance cases against a [`Store`] implementation.
#[derive(Debug)]
pub struct Suite;

impl Suite {
    /// The behaviour cases, by name.
    #[must_use]
    pub fn cases() -> Vec<(&'static str, Case)> {
        cases::all()
    }

    /// The persistence cases, by name.
    #[must_use]
    pub fn durable_cases() -> Vec<(&'static str, DurableCase)> {
        cases::durable()
    }

    /// Runs every behaviour case, each on a fresh empty store made by `new`.
    ///
    /// # Errors
    /// [`Failures`] listing every case that failed (including a store `new` could not make).
    pub fn test_all<S: Store>(new: impl Fn() -> Result<S, StoreError>) -> Result<(), Failures> {
        let mut failed = Vec::new();
        for (case, run) in Self::cases() {
            let outcome = new().map_err(Failure::from).and_then(|store| run(&store));
            if let Err(f) = outcome {
                failed.push(f.in_case(case));
            }
        }
        into_result(failed)
    }

    /// Runs every persistence case, each in a new subdirectory of `dir` (which must exist),
    /// with `open` opening (or creating) the store kept at a given path.
    ///
    /// # Errors
    /// [`Failures`] listing every case that failed.
    pub fn test_durable<S: Store>(
        dir: &Path,
        open: impl Fn(&Path) -> Result<S, StoreError>,
    ) -> Result<(), Failures> {
        let open_boxed =
            |path: &Path| -> Result<Box<dyn Store>, StoreError> { Ok(Box::new(open(path)?)) };
        let mut failed = Vec::new();
        for (case, run) in Self::durable_cases() {
            let case_dir = dir.join(case);
            let outcome = std::fs::create_dir_all(&case_dir)
                .map_err(|e| Failure::new(format!("cannot create {}: {e}", case_dir.display())))
                .and_then(|()| run(&case_dir, &open_boxed));
            if let Err(f) = outcome {
                failed.push(f.in_case(case));
            }
        }
        into_result(failed)
    }
}

fn into_result(failed: Vec<Failure>) -> Result<(), Failures> {
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failures(failed))
    }
}
