//! Typed identifiers and validated names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random identifier.
            #[must_use]
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies a virtual machine for its whole life, across renames and nodes.
    VmId
);
uuid_id!(
    /// Identifies a long-running action (start, stop, import...) that can be polled or awaited.
    OperationId
);
uuid_id!(
    /// Identifies an API token (never the secret itself).
    TokenId
);

/// Longest accepted [`Name`], in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// A name for a VM, image or tenant: 1 to 63 characters of `a-z`, `0-9` and `-`, starting with a
/// letter or digit, so it is safe in paths, URLs and QEMU arguments.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("must be at most {MAX_NAME_LEN} characters, got {len}")]
    TooLong {
        /// Length of the rejected name, in bytes.
        len: usize,
    },
    /// The name holds a character outside `a-z`, `0-9`, `-`, or starts with `-`.
    #[error("may contain only a-z, 0-9 and '-', and must not start with '-' (found {found:?})")]
    BadChar {
        /// The first offending character.
        found: char,
    },
}

impl Name {
    /// Checks and wraps `s`.
    ///
    /// # Errors
    /// [`NameError`] when `s` is empty, too long, or holds a character outside `a-z0-9-`.
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s = s.into();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: s.len() });
        }
        for (i, c) in s.chars().enumerate() {
            let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || (c == '-' && i > 0);
            if !ok {
                return Err(NameError::BadChar { found: c });
            }
        }
        Ok(Self(s))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> Self {
        n.0
    }
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_lowercase_digits_and_inner_dashes() {
        for ok in ["a", "web-1", "0db", &"x".repeat(63)] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_reject_empty_long_and_unsafe_characters() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(
            Name::new("x".repeat(64)),
            Err(NameError::TooLong { len: 64 })
        );
        assert_eq!(Name::new("-a"), Err(NameError::BadChar { found: '-' }));
        assert_eq!(Name::new("A"), Err(NameError::BadChar { found: 'A' }));
        assert_eq!(Name::new("../x"), Err(NameError::BadChar { found: '.' }));
        assert_eq!(Name::new("a b"), Err(NameError::BadChar { found: ' ' }));
    }

    #[test]
    fn names_are_checked_when_deserialized() {
        let err = serde_json::from_str::<Name>("\"Bad/Name\"").unwrap_err();
        assert!(err.to_string().contains("may contain only"), "{err}");
        let ok: Name = serde_json::from_str("\"vm-1\"").unwrap();
        assert_eq!(ok.as_str(), "vm-1");
    }
}
