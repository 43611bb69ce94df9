//! DWCP feature flags of a running node: read from a file at start ([`read_dwcp_flags`]) and
//! read again on request ([`Node::reload_dwcp_flags`], which `novacron server` calls on
//! SIGHUP).
//!
//! ```text
//!  FILE ─ read_dwcp_flags ─► ClusterConfig.dwcp_flags ─► Cluster.flags (FlagSet)
//!  SIGHUP ─► reload_dwcp_flags: read FILE, validate ─► FlagSet::update  (refused: flags stay)
//!  each migration stream sent ─► FlagSet::snapshot ─► migrate::features::apply
//! ```

use crate::node::Node;
use dwcp::flags::{Flags, FlagsError};
use std::path::{Path, PathBuf};

/// Why a flags file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DwcpFlagsError {
    /// The file could not be read.
    #[error("could not read the DWCP flags file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid flags document.
    #[error("invalid DWCP flags file {path}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        #[source]
        source: FlagsError,
    },
    /// The blocking task that reads the file died.
    #[error("the DWCP flags file task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Reads and validates the flags file at `path`. Blocking (the file is small).
///
/// # Errors
/// [`DwcpFlagsError::Read`] when the file cannot be read, [`DwcpFlagsError::Invalid`] when it
/// is not a flags document (unknown key, wrong type, percentage above 100).
pub fn read_dwcp_flags(path: &Path) -> Result<Flags, DwcpFlagsError> {
    let text = std::fs::read_to_string(path).map_err(|source| DwcpFlagsError::Read {
        path: path.to_owned(),
        source,
    })?;
    Flags::from_json(&text).map_err(|source| DwcpFlagsError::Invalid {
        path: path.to_owned(),
        source,
    })
}

impl Node {
    /// Reads the flags file again and puts its flags in force for the migration streams that
    /// start from now on (streams under way keep theirs). Returns the new flags, or `None`
    /// when there is no file to read: the node takes no part in migrations, or was started
    /// without one.
    ///
    /// # Errors
    /// [`DwcpFlagsError`] when the file cannot be read or is not a valid document; the flags
    /// in force stay.
    pub async fn reload_dwcp_flags(&self) -> Result<Option<Flags>, DwcpFlagsError> {
        let Some(cluster) = self.inner.cluster.as_ref() else {
            return Ok(None);
        };
        let Some(path) = cluster.config.dwcp_flags_file.clone() else {
            return Ok(None);
        };
        let _change = cluster.flags_change.lock().await;
        let flags = tokio::task::spawn_blocking(move || read_dwcp_flags(&path))
            .await
            .map_err(DwcpFlagsError::Task)??;
        cluster.flags.update(flags);
        Ok(Some(flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwcp::flags::Component;

    #[test]
    fn reading_names_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        let e = read_dwcp_flags(&path).unwrap_err();
        assert!(matches!(e, DwcpFlagsError::Read { .. }), "{e:?}");
        std::fs::write(&path, r#"{"hde":{"enabled":false,"rollout":5}}"#).unwrap();
        let e = read_dwcp_flags(&path).unwrap_err();
        let text = crate::vms::chain(&e);
        assert!(text.contains("flags.json"), "{text}");
        assert!(text.contains("hde.rollout"), "{text}");
        std::fs::write(&path, r#"{"hde":{"enabled":false}}"#).unwrap();
        let flags = read_dwcp_flags(&path).unwrap();
        assert!(!flags.rule(Component::Hde).enabled());
    }
}
