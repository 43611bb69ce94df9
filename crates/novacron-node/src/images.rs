//! Importing and deleting images. An import copies the files into the node's image store, so
//! a later change or removal of the originals does not touch VMs made from them.

use crate::node::Node;
use crate::vms::chain;
use novacron_api::types::ImageImportRequest;
use novacron_api::{Caller, ServiceError};
use novacron_model::{ByteSize, EventKind, Image, Name, Operation, OperationKind, Timestamp};
use novacron_qemu::img;
use novacron_store::Command;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

fn check_file(field: &str, path: &str) -> Result<PathBuf, ServiceError> {
    let p = PathBuf::from(path);
    let invalid = |message: String| ServiceError::Invalid {
        field: field.to_owned(),
        message,
    };
    if !p.is_absolute() {
        return Err(invalid(format!(
            "must be an absolute path on the node, got {path:?}"
        )));
    }
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(p),
        Ok(_) => Err(invalid(format!("{path} is not a regular file"))),
        Err(e) => Err(invalid(format!("cannot read {path}: {e}"))),
    }
}

/// BLAKE3 of what makes an image (see [`Image::digest`]): each file's BLAKE3 (disk, kernel,
/// initrd; `None` for one the image lacks), tagged by its role, and the command line.
pub(crate) fn digest_from(files: [Option<blake3::Hash>; 3], cmdline: Option<&str>) -> String {
    let mut all = blake3::Hasher::new();
    for (role, file) in ["disk", "kernel", "initrd"].into_iter().zip(files) {
        all.update(role.as_bytes());
        match file {
            Some(hash) => all.update(b"=").update(hash.as_bytes()),
            None => all.update(b"-"),
        };
    }
    if let Some(c) = cmdline {
        let len = u64::try_from(c.len()).unwrap_or(u64::MAX);
        all.update(b"cmdline=")
            .update(&len.to_le_bytes())
            .update(c.as_bytes());
    }
    all.finalize().to_hex().to_string()
}

/// The digest of `image` ([`digest_from`] its files): the stored one when the record has one,
/// else read from its files.
///
/// # Errors
/// A file of the image cannot be read.
pub(crate) async fn digest_of(image: &Image) -> std::io::Result<String> {
    if let Some(d) = &image.digest {
        return Ok(d.clone());
    }
    let paths = [
        Some(PathBuf::from(&image.disk)),
        image.kernel.as_ref().map(PathBuf::from),
        image.initrd.as_ref().map(PathBuf::from),
    ];
    let cmdline = image.cmdline.clone();
    tokio::task::spawn_blocking(move || {
        let hash = |path: Option<PathBuf>| -> std::io::Result<Option<blake3::Hash>> {
            path.map(|p| {
                let mut file = blake3::Hasher::new();
                file.update_reader(std::fs::File::open(&p)?)?;
                Ok(file.finalize())
            })
            .transpose()
        };
        let [disk, kernel, initrd] = paths;
        let files = [hash(disk)?, hash(kernel)?, hash(initrd)?];
        Ok(digest_from(files, cmdline.as_deref()))
    })
    .await
    .map_err(std::io::Error::other)?
}

impl Node {
    /// Admits an import and runs it as an operation.
    pub(crate) async fn image_import(
        &self,
        caller: &Caller,
        req: ImageImportRequest,
    ) -> Result<Operation, ServiceError> {
        let disk = check_file("disk", &req.disk)?;
        let kernel = req
            .kernel
            .as_deref()
            .map(|k| check_file("kernel", k))
            .transpose()?;
        let initrd = req
            .initrd
            .as_deref()
            .map(|i| check_file("initrd", i))
            .transpose()?;
        if kernel.is_none() && (initrd.is_some() || req.cmdline.is_some()) {
            return Err(ServiceError::Invalid {
                field: "kernel".to_owned(),
                message: "initrd and cmdline need a kernel".to_owned(),
            });
        }
        if req.cmdline.as_ref().is_some_and(|c| c.len() > 4096) {
            return Err(ServiceError::Invalid {
                field: "cmdline".to_owned(),
                message: "at most 4096 bytes".to_owned(),
            });
        }
        let exists = || ServiceError::AlreadyExists {
            kind: "image",
            key: req.name.to_string(),
        };
        if self.store().image(&req.name).is_some() {
            return Err(exists());
        }
        if !self
            .inner
            .importing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(req.name.clone())
        {
            return Err(exists());
        }
        let name = req.name.clone();
        let op = match self
            .begin_op(&caller.tenant, OperationKind::ImageImport, name.to_string())
            .await
        {
            Ok(op) => op,
            Err(e) => {
                self.end_import(&name);
                return Err(e);
            }
        };
        let node = self.clone();
        self.spawn_op(op.clone(), async move {
            let dir = node.layout().image(&name);
            let result = node
                .import_files(
                    &dir,
                    &name,
                    &disk,
                    kernel.as_deref(),
                    initrd.as_deref(),
                    req.cmdline,
                )
                .await;
            if result.is_err() {
                // Nothing half-imported: the record was not stored, so the copies go too.
                let _ = tokio::fs::remove_dir_all(&dir).await;
            }
            node.end_import(&name);
            result
        });
        Ok(op)
    }

    fn end_import(&self, name: &Name) {
        self.inner
            .importing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    async fn import_files(
        &self,
        dir: &Path,
        name: &Name,
        disk: &Path,
        kernel: Option<&Path>,
        initrd: Option<&Path>,
        cmdline: Option<String>,
    ) -> Result<(), String> {
        let info = img::info(disk)
            .await
            .map_err(|e| format!("disk: {}", chain(&e)))?;
        if info.backing.is_some() {
            return Err(
                "disk: has a backing file; import a standalone image (qemu-img convert)".to_owned(),
            );
        }
        if !matches!(info.format.as_str(), "qcow2" | "raw") {
            return Err(format!(
                "disk: format {} is not supported (qcow2 or raw)",
                info.format
            ));
        }
        // A directory left by an import the daemon did not finish.
        let _ = tokio::fs::remove_dir_all(dir).await;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("could not create {}: {e}", dir.display()))?;
        let copy = |from: &Path, to: PathBuf| {
            let from = from.to_path_buf();
            async move {
                tokio::fs::copy(&from, &to).await.map_err(|e| {
                    format!("could not copy {} to {}: {e}", from.display(), to.display())
                })?;
                Ok::<String, String>(to.display().to_string())
            }
        };
        let disk_copy = copy(disk, dir.join(format!("disk.{}", info.format))).await?;
        let kernel_copy = match kernel {
            Some(k) => Some(copy(k, dir.join("vmlinuz")).await?),
            None => None,
        };
        let initrd_copy = match initrd {
            Some(i) => Some(copy(i, dir.join("initrd.img")).await?),
            None => None,
        };
        let mut image = Image {
            name: name.clone(),
            disk: disk_copy,
            disk_format: info.format,
            virtual_size: ByteSize(info.virtual_size),
            kernel: kernel_copy,
            initrd: initrd_copy,
            cmdline,
            created_at: Timestamp::now(),
            digest: None,
        };
        image.digest = Some(
            digest_of(&image)
                .await
                .map_err(|e| format!("could not read the copies back: {e}"))?,
        );
        self.apply(Command::PutImage(image.clone()))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(image = %name, "image imported");
        self.seed_image_pages(&image).await;
        self.inner
            .events
            .publish(None, EventKind::ImageImported { name: name.clone() });
        Ok(())
    }

    /// Deletes an image no VM uses.
    pub(crate) async fn image_delete(&self, name: &str) -> Result<(), ServiceError> {
        let not_found = || ServiceError::NotFound {
            kind: "image",
            key: name.to_owned(),
        };
        let name = Name::new(name).map_err(|_| not_found())?;
        if self.store().image(&name).is_none() {
            return Err(not_found());
        }
        self.apply(Command::DeleteImage(name.clone())).await?;
        let dir = self.layout().image(&name);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted image's files");
        }
        Ok(())
    }

    /// One image.
    pub(crate) fn image_get(&self, name: &str) -> Result<Image, ServiceError> {
        Name::new(name)
            .ok()
            .and_then(|n| self.store().image(&n))
            .ok_or_else(|| ServiceError::NotFound {
                kind: "image",
                key: name.to_owned(),
            })
    }
}
