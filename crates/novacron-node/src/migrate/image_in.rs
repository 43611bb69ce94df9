//! An image arriving ahead of a migration. A destination that lacks the image of a VM about
//! to migrate here receives the image's files over DWCP into a staging directory
//! (`DIR/images/.incoming-ID`), takes no more of each than the source offered, checks the
//! disk is a standalone image and the whole against the offered digest, and keeps it as if it
//! had been imported here. A destination holding a different image of that name refuses.

use super::streams::Expected;
use crate::images::{digest_from, digest_of};
use crate::node::Node;
use crate::vms::chain;
use novacron_api::ServiceError;
use novacron_api::migration::{
    ImageFile, PeerImageAnswer, PeerImageFile, PeerImageOffer, PeerImageStream, PeerNode,
    image_stream,
};
use novacron_model::{ByteSize, EventKind, Image, OperationId, Timestamp};
use novacron_qemu::img;
use novacron_store::Command;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// Time a reception is kept beyond the source's own budget before it is dropped.
const RECEPTION_MARGIN: Duration = Duration::from_secs(120);
/// Longest a commit waits for the files' streams to end: the source commits only once its
/// sessions were confirmed, so they have.
const ARRIVAL_WAIT: Duration = Duration::from_secs(60);
/// Prefix of the staging directories under `DIR/images` (image names cannot start with `.`).
const STAGING_PREFIX: &str = ".incoming-";

/// An image being received for migration `id`.
pub(crate) struct ImageIn {
    peer: String,
    /// The source's record, with the digest the files must have.
    offered: Image,
    digest: String,
    staging: PathBuf,
    files: Vec<Arriving>,
    /// Commit and abort one at a time; `true` once either ended the reception.
    ended: tokio::sync::Mutex<bool>,
}

/// One file's stream and where it lands in the staging directory.
type Arriving = (ImageFile, Expected, PathBuf);

/// A file that refuses to grow past the length the source offered.
struct Bounded {
    file: std::fs::File,
    left: u64,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if len > self.left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is longer than the source offered",
            ));
        }
        self.file.write_all(buf)?;
        self.left -= len;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Name of `file` in an image's directory (as an import names it).
fn file_name(file: ImageFile, format: &str) -> String {
    match file {
        ImageFile::Disk => format!("disk.{format}"),
        ImageFile::Kernel => "vmlinuz".to_owned(),
        ImageFile::Initrd => "initrd.img".to_owned(),
    }
}

/// Checks an offer is self-consistent: a hex digest, a supported disk format, and exactly
/// the files the record names.
fn check_offer(offer: &PeerImageOffer) -> Result<String, ServiceError> {
    let invalid = |field: &str, message: String| ServiceError::Invalid {
        field: field.to_owned(),
        message,
    };
    let image = &offer.image;
    let digest = image
        .digest
        .clone()
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| invalid("image.digest", "must be 64 hex digits".to_owned()))?;
    if !matches!(image.disk_format.as_str(), "qcow2" | "raw") {
        return Err(invalid(
            "image.disk_format",
            format!("{} is not supported (qcow2 or raw)", image.disk_format),
        ));
    }
    if image.cmdline.as_ref().is_some_and(|c| c.len() > 4096) {
        return Err(invalid("image.cmdline", "at most 4096 bytes".to_owned()));
    }
    let wanted = [
        (ImageFile::Disk, true),
        (ImageFile::Kernel, image.kernel.is_some()),
        (ImageFile::Initrd, image.initrd.is_some()),
    ];
    for (file, named) in wanted {
        let offered = offer.files.iter().filter(|f| f.file == file).count();
        if offered != usize::from(named) {
            return Err(invalid(
                "files",
                format!(
                    "the {} is offered {offered} times; the record asks for {}",
                    file.as_str(),
                    usize::from(named)
                ),
            ));
        }
    }
    Ok(digest)
}

impl Node {
    /// `POST /peer/migrations/{id}/image`.
    pub(crate) async fn peer_image_offer_in(
        &self,
        peer: &PeerNode,
        id: OperationId,
        offer: PeerImageOffer,
    ) -> Result<PeerImageAnswer, ServiceError> {
        let cluster = self.cluster()?;
        let digest = check_offer(&offer)?;
        let name = offer.image.name.clone();
        if let Some(here) = self.store().image(&name) {
            let ours = digest_of(&here).await.map_err(|e| {
                ServiceError::Unavailable(format!("could not read image {name} here: {e}"))
            })?;
            if ours == digest {
                return Ok(PeerImageAnswer::Present);
            }
            return Err(ServiceError::Conflict(format!(
                "image {name} on this node is not the one on {}: their digests differ ({} here, \
                 {} there); delete one or import it under another name",
                peer.0,
                ours.get(..12).unwrap_or(&ours),
                digest.get(..12).unwrap_or(&digest),
            )));
        }
        if cluster.images_in().contains_key(&id) {
            return Err(ServiceError::AlreadyExists {
                kind: "image reception",
                key: id.to_string(),
            });
        }
        if !self
            .inner
            .importing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone())
        {
            return Ok(PeerImageAnswer::Busy);
        }
        let staging = self.layout().images().join(format!("{STAGING_PREFIX}{id}"));
        match self.open_reception(id, &offer, &staging) {
            Ok((files, streams)) => {
                let reception = Arc::new(ImageIn {
                    peer: peer.0.clone(),
                    offered: offer.image,
                    digest,
                    staging,
                    files,
                    ended: tokio::sync::Mutex::new(false),
                });
                cluster.images_in().insert(id, reception);
                let budget = Duration::from_secs(offer.timeout_secs) + RECEPTION_MARGIN;
                let node = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(budget).await;
                    node.abort_image_in(id, "not committed in time").await;
                });
                tracing::info!(migration = %id, image = %name, peer = %peer.0, "receiving an image");
                Ok(PeerImageAnswer::Send {
                    dwcp_port: cluster.dwcp_port(),
                    streams,
                })
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                self.release_image_name(&name);
                Err(e)
            }
        }
    }

    /// Makes the staging directory and one bounded sink per offered file.
    fn open_reception(
        &self,
        id: OperationId,
        offer: &PeerImageOffer,
        staging: &Path,
    ) -> Result<(Vec<Arriving>, Vec<PeerImageStream>), ServiceError> {
        let cluster = self.cluster()?;
        let unavailable = |what: String| ServiceError::Unavailable(what);
        let _ = std::fs::remove_dir_all(staging);
        std::fs::create_dir_all(staging)
            .map_err(|e| unavailable(format!("could not create {}: {e}", staging.display())))?;
        let mut files = Vec::new();
        let mut streams = Vec::new();
        for &PeerImageFile { file, size } in &offer.files {
            let path = staging.join(file_name(file, &offer.image.disk_format));
            let created = std::fs::File::create(&path)
                .map_err(|e| unavailable(format!("could not create {}: {e}", path.display())))?;
            let stream = image_stream(id, file);
            let expected = cluster
                .streams
                .expect(
                    &stream,
                    Box::new(Bounded {
                        file: created,
                        left: size,
                    }),
                )
                .map_err(unavailable)?;
            files.push((file, expected, path));
            streams.push(PeerImageStream { file, stream });
        }
        Ok((files, streams))
    }

    /// `POST /peer/migrations/{id}/image/commit`.
    pub(crate) async fn peer_image_commit_in(
        &self,
        peer: &PeerNode,
        id: OperationId,
    ) -> Result<Image, ServiceError> {
        let cluster = self.cluster()?;
        let reception = cluster
            .images_in()
            .get(&id)
            .filter(|r| r.peer == peer.0)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound {
                kind: "image reception",
                key: id.to_string(),
            })?;
        let mut ended = reception.ended.lock().await;
        if *ended {
            return Err(ServiceError::Conflict(format!(
                "the image reception of migration {id} has ended"
            )));
        }
        *ended = true;
        cluster.images_in().remove(&id);
        let kept = self.keep_image(&reception).await;
        if let Err(e) = &kept {
            tracing::warn!(migration = %id, image = %reception.offered.name, error = %e, "image refused");
            let _ = tokio::fs::remove_dir_all(&reception.staging).await;
        }
        self.release_image_name(&reception.offered.name);
        kept
    }

    /// Checks what arrived and records it as an image of this node.
    async fn keep_image(&self, reception: &ImageIn) -> Result<Image, ServiceError> {
        let refused = |why: String| {
            ServiceError::Conflict(format!("image {}: {why}", reception.offered.name))
        };
        // Each file's BLAKE3 (disk, kernel, initrd), as the receiver verified it against the
        // sender's: the files need not be read again.
        let mut hashes = [None; 3];
        for (file, expected, path) in &reception.files {
            let hash = match tokio::time::timeout(ARRIVAL_WAIT, expected.verified()).await {
                Ok(Ok(hash)) => hash,
                Ok(Err(e)) => {
                    return Err(refused(format!(
                        "the {} did not arrive whole: {e}",
                        file.as_str()
                    )));
                }
                Err(_) => {
                    return Err(refused(format!(
                        "the {} has not arrived after {} s",
                        file.as_str(),
                        ARRIVAL_WAIT.as_secs()
                    )));
                }
            };
            let [disk, kernel, initrd] = &mut hashes;
            match file {
                ImageFile::Disk => *disk = Some(hash),
                ImageFile::Kernel => *kernel = Some(hash),
                ImageFile::Initrd => *initrd = Some(hash),
            }
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| refused(format!("could not write the {}: {e}", file.as_str())))?;
        }
        let final_dir = self.layout().image(&reception.offered.name);
        let in_dir = |file: ImageFile| {
            reception.files.iter().any(|(f, ..)| *f == file).then(|| {
                final_dir
                    .join(file_name(file, &reception.offered.disk_format))
                    .display()
                    .to_string()
            })
        };
        let staged_disk = reception
            .staging
            .join(file_name(ImageFile::Disk, &reception.offered.disk_format));
        let info = img::info(&staged_disk)
            .await
            .map_err(|e| refused(format!("the disk is not readable: {}", chain(&e))))?;
        if info.backing.is_some() || info.format != reception.offered.disk_format {
            return Err(refused(format!(
                "the disk arrived as {} {}, offered as a standalone {}",
                info.format,
                if info.backing.is_some() {
                    "with a backing file"
                } else {
                    "image"
                },
                reception.offered.disk_format
            )));
        }
        let digest = digest_from(hashes, reception.offered.cmdline.as_deref());
        if digest != reception.digest {
            return Err(refused(format!(
                "what arrived has digest {digest}, the source offered {}",
                reception.digest
            )));
        }
        // A directory left by an import or reception the daemon did not finish.
        let _ = tokio::fs::remove_dir_all(&final_dir).await;
        tokio::fs::rename(&reception.staging, &final_dir)
            .await
            .map_err(|e| {
                ServiceError::Unavailable(format!(
                    "could not move the image into {}: {e}",
                    final_dir.display()
                ))
            })?;
        let image = Image {
            name: reception.offered.name.clone(),
            disk: final_dir
                .join(file_name(ImageFile::Disk, &info.format))
                .display()
                .to_string(),
            kernel: in_dir(ImageFile::Kernel),
            initrd: in_dir(ImageFile::Initrd),
            disk_format: info.format,
            virtual_size: ByteSize(info.virtual_size),
            cmdline: reception.offered.cmdline.clone(),
            created_at: Timestamp::now(),
            digest: Some(digest),
        };
        if let Err(e) = self.apply(Command::PutImage(image.clone())).await {
            let _ = tokio::fs::remove_dir_all(&final_dir).await;
            return Err(e);
        }
        tracing::info!(image = %image.name, from = %reception.peer, "image received");
        // N.B. not awaited: the migration that brought the image goes on meanwhile (its memory
        // session may open before the pages are in; they are for the migrations after it).
        let node = self.clone();
        let seeded = image.clone();
        tokio::spawn(async move { node.seed_image_pages(&seeded).await });
        self.inner.events.publish(
            None,
            EventKind::ImageImported {
                name: image.name.clone(),
            },
        );
        Ok(image)
    }

    /// Drops the image reception of migration `id`, if one is open, and its files.
    pub(crate) async fn abort_image_in(&self, id: OperationId, reason: &str) {
        let Ok(cluster) = self.cluster() else { return };
        let Some(reception) = cluster.images_in().get(&id).cloned() else {
            return;
        };
        let mut ended = reception.ended.lock().await;
        if *ended {
            return;
        }
        *ended = true;
        cluster.images_in().remove(&id);
        tracing::warn!(migration = %id, image = %reception.offered.name, reason, "image reception dropped");
        if let Err(e) = tokio::fs::remove_dir_all(&reception.staging).await {
            tracing::warn!(dir = %reception.staging.display(), error = %e, "could not remove");
        }
        self.release_image_name(&reception.offered.name);
    }

    /// `DELETE /peer/migrations/{id}` for the image part: drops a reception `peer` opened.
    pub(crate) async fn peer_abort_image_in(&self, peer: &PeerNode, id: OperationId) {
        let ours = self
            .cluster()
            .is_ok_and(|c| c.images_in().get(&id).is_some_and(|r| r.peer == peer.0));
        if ours {
            self.abort_image_in(id, &format!("aborted by {}", peer.0))
                .await;
        }
    }

    fn release_image_name(&self, name: &novacron_model::Name) {
        self.inner
            .importing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Removes the staging directories of receptions a previous daemon did not finish.
    pub(crate) async fn remove_stale_receptions(&self) {
        let Ok(mut dir) = tokio::fs::read_dir(self.layout().images()).await else {
            return;
        };
        while let Ok(Some(entry)) = dir.next_entry().await {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                tracing::info!(dir = %entry.path().display(), "removing an unfinished image reception");
                if let Err(e) = tokio::fs::remove_dir_all(entry.path()).await {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_model::Name;

    fn offer() -> PeerImageOffer {
        PeerImageOffer {
            image: Image {
                name: Name::new("deb").unwrap(),
                disk: "/src/disk.qcow2".into(),
                disk_format: "qcow2".into(),
                virtual_size: ByteSize::mib(64),
                kernel: Some("/src/vmlinuz".into()),
                initrd: None,
                cmdline: Some("console=ttyS0".into()),
                created_at: Timestamp(1),
                digest: Some("ab".repeat(32)),
            },
            files: vec![
                PeerImageFile {
                    file: ImageFile::Disk,
                    size: 10,
                },
                PeerImageFile {
                    file: ImageFile::Kernel,
                    size: 5,
                },
            ],
            timeout_secs: 60,
        }
    }

    fn refused_field(o: &PeerImageOffer) -> String {
        match check_offer(o) {
            Err(ServiceError::Invalid { field, .. }) => field,
            other => panic!("not refused as invalid: {other:?}"),
        }
    }

    #[test]
    fn an_offer_names_its_digest_format_and_exactly_its_files() {
        assert_eq!(check_offer(&offer()).unwrap(), "ab".repeat(32));
        let mut o = offer();
        o.image.digest = Some("xy".repeat(32));
        assert_eq!(refused_field(&o), "image.digest");
        o.image.digest = None;
        assert_eq!(refused_field(&o), "image.digest");
        let mut o = offer();
        o.image.disk_format = "vmdk".into();
        assert_eq!(refused_field(&o), "image.disk_format");
        // A file the record does not name, a file named twice, a file missing.
        let mut o = offer();
        o.files.push(PeerImageFile {
            file: ImageFile::Initrd,
            size: 1,
        });
        assert_eq!(refused_field(&o), "files");
        let mut o = offer();
        o.files.push(PeerImageFile {
            file: ImageFile::Disk,
            size: 1,
        });
        assert_eq!(refused_field(&o), "files");
        let mut o = offer();
        o.files.remove(1);
        assert_eq!(refused_field(&o), "files");
    }

    #[test]
    fn a_received_file_takes_no_more_than_was_offered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let mut w = Bounded {
            file: std::fs::File::create(&path).unwrap(),
            left: 10,
        };
        w.write_all(b"0123456").unwrap();
        w.write_all(b"789").unwrap();
        let e = w.write_all(b"a").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    }
}
