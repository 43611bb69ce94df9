//! How suite cases report: [`Failure`] values and the `ensure*` macros that return them.
//!
//! Cases return `Result<(), Failure>` instead of panicking, so the suite can run every case and
//! list all that failed, and so this module builds under the crate's no-panic lints when the
//! `testing` feature is on.

use crate::StoreError;
use novacron_model::NameError;
use std::fmt;
use std::panic::Location;

/// One conformance check that did not hold.
#[derive(Debug)]
pub struct Failure {
    /// The case it happened in (empty until the suite runner sets it).
    pub case: &'static str,
    /// What was expected and what was found.
    pub message: String,
    /// Where the check is in the suite's source.
    pub location: &'static Location<'static>,
}

impl Failure {
    /// A failure at the caller's location.
    #[track_caller]
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            case: "",
            message: message.into(),
            location: Location::caller(),
        }
    }

    /// The same failure, attributed to `case`.
    #[must_use]
    pub fn in_case(self, case: &'static str) -> Self {
        Self { case, ..self }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (at {})", self.case, self.message, self.location)
    }
}

impl std::error::Error for Failure {}

impl From<StoreError> for Failure {
    /// An unexpected error from the store under test, with its whole chain.
    #[track_caller]
    fn from(e: StoreError) -> Self {
        let mut message = format!("unexpected store error: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        Self::new(message)
    }
}

impl From<NameError> for Failure {
    #[track_caller]
    fn from(e: NameError) -> Self {
        Self::new(format!("bad fixture name: {e}"))
    }
}

/// Every failed case of a suite run.
#[derive(Debug)]
pub struct Failures(pub Vec<Failure>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} conformance case(s) failed", self.0.len())?;
        for failure in &self.0 {
            write!(f, "\n  {failure}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failures {}

/// Returns a [`Failure`] from the enclosing case unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::testing::Failure::new(format!($($fmt)+)));
        }
    };
}

/// Returns a [`Failure`] from the enclosing case unless `$left == $right`.
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err($crate::testing::Failure::new(format!(
                        "{} != {}\n    left:  {:?}\n    right: {:?}",
                        stringify!($left),
                        stringify!($right),
                        l,
                        r
                    )));
                }
            }
        }
    };
}

/// Returns a [`Failure`] from the enclosing case unless `$value` matches `$pattern`.
macro_rules! ensure_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $value {
            $pattern $(if $guard)? => {}
            ref other => {
                return Err($crate::testing::Failure::new(format!(
                    "{} is {:?}, expected {}",
                    stringify!($value),
                    other,
                    stringify!($pattern $(if $guard)?)
                )));
            }
        }
    };
}

pub(crate) use {ensure, ensure_eq, ensure_matches};
