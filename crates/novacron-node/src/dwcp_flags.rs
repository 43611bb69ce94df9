//! DWCP feature flags of a running node: read from a file at start ([`read_dwcp_flags`]),
//! read again on request ([`Node::reload_dwcp_flags`], which `novacron server` calls on
//! SIGHUP), shown and replaced through the API (which rewrites the file), and exported as
//! metrics.
//!
//! ```text
//!  FILE ─ read_dwcp_flags ─► ClusterConfig.dwcp_flags ─► Cluster.flags (FlagSet)
//!  SIGHUP ─► reload_dwcp_flags: read FILE, validate ─► FlagSet::update  (refused: flags stay)
//!  PUT /node/dwcp-flags ─► validate ─► FILE.tmp, fsync, rename over FILE ─► FlagSet::update
//!  each migration stream sent ─► FlagSet::snapshot ─► migrate::features::apply
//! ```
//!
//! A re-read and a change both hold `Cluster::flags_change`, so they never interleave: the
//! flags in force are those of the last complete document, and the file holds the same.

use crate::migrate::Cluster;
use crate::node::Node;
use dwcp::flags::{Component, FlagRule, Flags, FlagsError};
use novacron_api::dwcp_flags::{DwcpFeatures, DwcpFlagRule, DwcpFlags, DwcpFlagsResponse};
use novacron_api::{Caller, ServiceError};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Logs `what` happened to the flags in force (`source`: where they came from), with the kill
/// switch and the components they turn on for node `node`.
pub fn log_dwcp_flags(flags: &Flags, node: &str, source: &str, what: &str) {
    let on = flags.for_node(node);
    tracing::info!(
        source,
        kill_switch = flags.kill_switch(),
        hde = on.hde,
        pba = on.pba,
        multistream = on.multistream,
        dedup_store = on.dedup_store,
        "{what}"
    );
}

/// Why a flags file could not be read or written.
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
    /// The new document could not be put in place of the file.
    #[error("could not write the DWCP flags file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task that reads or writes the file died.
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

/// Replaces the file at `path` with `flags`: a temporary file in the same directory, synced,
/// then renamed over it, so that a reader (or a crash) finds the old document or the new one,
/// never part of one. A symbolic link is followed, and stays. Blocking.
fn write_dwcp_flags(path: &Path, flags: &Flags) -> Result<(), DwcpFlagsError> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let replace = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(&target) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(format!("{}\n", flags.to_json()).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    if let Err(source) = replace() {
        // Best effort: the temporary file may never have been made; the write error is what
        // the caller needs.
        let _ = std::fs::remove_file(&tmp);
        return Err(DwcpFlagsError::Write {
            path: target,
            source,
        });
    }
    // The new document is in place for every reader; syncing the directory makes the rename
    // survive a power cut, and its failure does not undo the change.
    if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not sync the DWCP flags file's directory");
    }
    Ok(())
}

/// The API's document of `flags`.
fn to_document(flags: &Flags) -> DwcpFlags {
    let rule = |component| {
        let r = flags.rule(component);
        DwcpFlagRule {
            enabled: r.enabled(),
            rollout_percent: r.rollout_percent(),
        }
    };
    DwcpFlags {
        kill_switch: flags.kill_switch(),
        hde: rule(Component::Hde),
        pba: rule(Component::Pba),
        multistream: rule(Component::Multistream),
        dedup_store: rule(Component::DedupStore),
    }
}

/// The flags of the API's document, validated as a flags file is.
fn from_document(doc: &DwcpFlags) -> Result<Flags, ServiceError> {
    let mut flags = Flags::default().with_kill_switch(doc.kill_switch);
    for component in Component::ALL {
        let r = match component {
            Component::Hde => doc.hde,
            Component::Pba => doc.pba,
            Component::Multistream => doc.multistream,
            Component::DedupStore => doc.dedup_store,
        };
        let rule =
            FlagRule::new(r.enabled, r.rollout_percent).map_err(|e| ServiceError::Invalid {
                field: format!("{component}.rollout_percent"),
                message: e.to_string(),
            })?;
        flags = flags.with_rule(component, rule);
    }
    Ok(flags)
}

/// What the API shows of `flags` on the node of `cluster`.
fn response(cluster: &Cluster, flags: &Flags) -> DwcpFlagsResponse {
    let node = &cluster.config.node_name;
    let on = flags.for_node(node);
    DwcpFlagsResponse {
        node: node.clone(),
        flags: to_document(flags),
        effective: DwcpFeatures {
            hde: on.hde,
            pba: on.pba,
            multistream: on.multistream,
            dedup_store: on.dedup_store,
        },
        file: cluster
            .config
            .dwcp_flags_file
            .as_ref()
            .map(|p| p.display().to_string()),
    }
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

    /// The flags in force and what they turn on here.
    pub(crate) fn dwcp_flags_get(&self) -> Result<DwcpFlagsResponse, ServiceError> {
        let cluster = self.cluster()?;
        Ok(response(cluster, &cluster.flags.snapshot()))
    }

    /// Replaces the flags: first the file, when there is one, so that a failed write changes
    /// nothing; then the flags in force.
    pub(crate) async fn dwcp_flags_put(
        &self,
        caller: &Caller,
        doc: DwcpFlags,
    ) -> Result<DwcpFlagsResponse, ServiceError> {
        let cluster = self.cluster()?;
        let flags = from_document(&doc)?;
        let _change = cluster.flags_change.lock().await;
        if let Some(path) = cluster.config.dwcp_flags_file.clone() {
            tokio::task::spawn_blocking(move || write_dwcp_flags(&path, &flags))
                .await
                .map_err(DwcpFlagsError::Task)
                .and_then(|written| written)
                .map_err(|e| {
                    let reason = crate::vms::chain(&e);
                    tracing::warn!(error = %reason, "DWCP feature flags not changed");
                    ServiceError::Unavailable(format!("{reason}; the flags are unchanged"))
                })?;
        }
        cluster.flags.update(flags);
        log_dwcp_flags(
            &flags,
            &cluster.config.node_name,
            &format!("token {}", caller.token),
            "DWCP feature flags changed through the API",
        );
        Ok(response(cluster, &flags))
    }

    /// `(component, on)` for this node and the kill switch, for the metrics; empty and `None`
    /// when the node takes no part in migrations.
    pub(crate) fn dwcp_flag_metrics(&self) -> (Vec<(&'static str, bool)>, Option<bool>) {
        let Some(cluster) = self.inner.cluster.as_ref() else {
            return (Vec::new(), None);
        };
        let flags = cluster.flags.snapshot();
        let on = flags.for_node(&cluster.config.node_name);
        let features = Component::ALL
            .into_iter()
            .map(|c| (c.name(), on.get(c)))
            .collect();
        (features, Some(flags.kill_switch()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Flags> {
        vec![
            Flags::default(),
            Flags::ALL_OFF,
            Flags::default().with_kill_switch(true),
            Flags::default()
                .with_rule(Component::Hde, FlagRule::new(true, 30).unwrap())
                .with_rule(Component::Multistream, FlagRule::new(false, 100).unwrap())
                .with_rule(Component::DedupStore, FlagRule::new(false, 0).unwrap()),
        ]
    }

    #[test]
    fn the_api_document_and_the_file_are_one_language() {
        for flags in samples() {
            let doc = to_document(&flags);
            assert_eq!(from_document(&doc).unwrap(), flags);
            // What the API sends, a file may hold, and the reverse.
            let api_json = serde_json::to_string(&doc).unwrap();
            assert_eq!(Flags::from_json(&api_json).unwrap(), flags);
            let file_doc: DwcpFlags = serde_json::from_str(&flags.to_json()).unwrap();
            assert_eq!(file_doc, doc);
        }
    }

    #[test]
    fn a_percentage_above_100_names_its_flag() {
        let mut doc = DwcpFlags::default();
        doc.pba.rollout_percent = 101;
        let e = from_document(&doc).unwrap_err();
        assert!(
            matches!(&e, ServiceError::Invalid { field, .. } if field == "pba.rollout_percent"),
            "{e:?}"
        );
    }

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

    #[test]
    fn writing_replaces_the_file_whole_and_leaves_nothing_beside_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let flags = Flags::default().with_kill_switch(true);
        write_dwcp_flags(&path, &flags).unwrap();
        assert_eq!(read_dwcp_flags(&path).unwrap(), flags);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("flags.json")]);
    }

    #[test]
    fn writing_through_a_link_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("flags.json");
        std::fs::write(&real, "{}").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_dwcp_flags(&link, &Flags::ALL_OFF).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(read_dwcp_flags(&real).unwrap(), Flags::ALL_OFF);
    }

    #[test]
    fn a_write_that_fails_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("flags.json");
        let e = write_dwcp_flags(&path, &Flags::ALL_OFF).unwrap_err();
        assert!(matches!(e, DwcpFlagsError::Write { .. }), "{e:?}");
        assert!(!path.exists());
    }
}
