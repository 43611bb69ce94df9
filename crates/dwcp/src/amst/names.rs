//! Which names a receiver accepts for the files it stores.

/// Longest accepted name in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a requested file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("file name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("file name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    /// The name is `.` or `..`, or contains a path separator, so it would leave the directory.
    #[error("file name {0:?} is not a plain name (no '/', '..' or absolute paths)")]
    NotPlain(String),
    /// The name contains a NUL or control character.
    #[error("file name {0:?} contains control characters")]
    ControlCharacter(String),
    /// The name ends in `.partial`, which the receiver keeps for unfinished transfers.
    #[error("file name {0:?} ends in .partial, which is reserved")]
    Reserved(String),
}

/// Accepts a single plain path component; refuses anything that could resolve outside the
/// receiver's directory.
///
/// # Errors
/// A [`NameError`] naming the problem.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\\') {
        return Err(NameError::NotPlain(name.to_owned()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter(name.to_owned()));
    }
    if name.ends_with(".partial") {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_accepted() {
        for name in [
            "disk.qcow2",
            "a",
            "vm-42.mem",
            "..hidden",
            "x..y",
            "ünïcode",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names_that_escape_the_directory_are_refused() {
        for name in [
            "..",
            ".",
            "/etc/passwd",
            "../x",
            "a/b",
            "a\\b",
            "sub/../../x",
        ] {
            assert!(
                matches!(validate_name(name), Err(NameError::NotPlain(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn empty_long_control_and_reserved_names_are_refused() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"a".repeat(256)), Err(NameError::TooLong));
        assert!(matches!(
            validate_name("a\0b"),
            Err(NameError::ControlCharacter(_))
        ));
        assert!(matches!(
            validate_name("x.partial"),
            Err(NameError::Reserved(_))
        ));
    }
}
