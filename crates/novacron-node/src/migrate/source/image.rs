//! Before the prepare: the destination must hold the image the VM's root disk is an overlay
//! of. The image is offered by digest; a destination that lacks it gets its files over DWCP
//! (deduplicated against what it holds, compressed for the link) and keeps it as an image of
//! its own, so that the next VM of that image finds it there.

use super::{Failed, Run, SAMPLE_EVERY};
use crate::images::digest_of;
use crate::migrate::streams::{self, Sending};
use crate::node::Node;
use novacron_api::migration::{ImageFile, PeerImageAnswer, PeerImageFile, PeerImageOffer};
use novacron_model::{Image, MigrationPhase};
use std::path::PathBuf;
use std::time::Duration;

/// Longest an offer or a commit may take: the destination may read a whole image to learn
/// its digest.
const IMAGE_CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Wait before asking again a destination that is receiving the image for another migration.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// The image's files: which, where here, and how long.
fn files_of(image: &Image) -> Result<Vec<(ImageFile, PathBuf, u64)>, String> {
    [
        (ImageFile::Disk, Some(&image.disk)),
        (ImageFile::Kernel, image.kernel.as_ref()),
        (ImageFile::Initrd, image.initrd.as_ref()),
    ]
    .into_iter()
    .filter_map(|(file, path)| path.map(|p| (file, PathBuf::from(p))))
    .map(|(file, path)| {
        let len = std::fs::metadata(&path)
            .map_err(|e| {
                format!(
                    "image {}: cannot read its {} {}: {e}",
                    image.name,
                    file.as_str(),
                    path.display()
                )
            })?
            .len();
        Ok((file, path, len))
    })
    .collect()
}

impl Node {
    /// Makes sure the destination holds the VM's image, sending it when it does not.
    pub(super) async fn image_to_peer(&self, run: &Run) -> Result<(), Failed> {
        let name = &run.vm.spec.image;
        let mut image = self
            .store()
            .image(name)
            .ok_or_else(|| format!("image {name} of the VM is not on this node"))?;
        let digest = digest_of(&image)
            .await
            .map_err(|e| format!("could not read image {name}: {e}"))?;
        image.digest = Some(digest);
        let files = files_of(&image)?;
        let offer = PeerImageOffer {
            image,
            files: files
                .iter()
                .map(|&(file, _, size)| PeerImageFile { file, size })
                .collect(),
            timeout_secs: run.policy.budget.as_secs(),
        };
        let client = run.client.clone().with_timeout(IMAGE_CALL_TIMEOUT);
        let mut cancel = run.outgoing.cancel.subscribe();
        loop {
            let answer = client
                .peer_image_offer(run.op.id, &offer)
                .await
                .map_err(|e| format!("{} refused image {name}: {e}", run.target))?;
            match answer {
                PeerImageAnswer::Present => return Ok(()),
                PeerImageAnswer::Busy => {
                    if run.started.elapsed() > run.policy.budget {
                        return Err(format!(
                            "{} was still receiving image {name} for another migration after {} s",
                            run.target,
                            run.policy.budget.as_secs()
                        )
                        .into());
                    }
                    tokio::select! {
                        () = tokio::time::sleep(BUSY_RETRY) => {}
                        _ = cancel.changed() => return Err("cancelled by the operator".to_owned().into()),
                    }
                }
                PeerImageAnswer::Send { dwcp_port, streams } => {
                    let sent = self.send_image(run, &files, dwcp_port, &streams).await;
                    let kept = match sent {
                        Ok(()) => client
                            .peer_image_commit(run.op.id)
                            .await
                            .map(drop)
                            .map_err(|e| format!("{} refused image {name}: {e}", run.target)),
                        Err(e) => Err(e),
                    };
                    if kept.is_ok() {
                        self.set_phase(run, MigrationPhase::Prepare);
                    } else if let Err(e) = run.client.peer_abort(run.op.id).await {
                        tracing::warn!(operation = %run.op.id, error = %e, "could not tell the destination to drop the image; it drops it on its own");
                    }
                    return kept.map_err(Failed::from);
                }
            }
        }
    }

    /// Sends each file as the session the destination named, publishing progress, until the
    /// destination confirmed all of them.
    async fn send_image(
        &self,
        run: &Run,
        files: &[(ImageFile, PathBuf, u64)],
        dwcp_port: u16,
        sessions: &[novacron_api::migration::PeerImageStream],
    ) -> Result<(), String> {
        let cluster = self.cluster().map_err(|e| e.to_string())?;
        let peer_url = cluster.peer_url(&run.target).map_err(|e| e.to_string())?;
        let host = crate::migrate::url_host(peer_url)
            .ok_or_else(|| format!("peer URL {peer_url} has no host"))?;
        let addr = format!("{host}:{dwcp_port}");
        let total: u64 = files.iter().map(|f| f.2).sum();
        let mut sending: Vec<Sending> = Vec::new();
        for (file, path, _) in files {
            let session = sessions.iter().find(|s| s.file == *file).ok_or_else(|| {
                format!("{} named no session for the {}", run.target, file.as_str())
            })?;
            sending.push(streams::send_file(
                cluster,
                &addr,
                &run.target,
                &session.stream,
                path,
            ));
        }
        tracing::info!(operation = %run.op.id, image = %run.vm.spec.image, bytes = total, "sending the image");
        let mut cancel = run.outgoing.cancel.subscribe();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.changed() => return Err("cancelled by the operator".to_owned()),
            }
            if let Some(e) = sending.iter().find_map(Sending::failure) {
                return Err(format!("image {} not sent: {e}", run.vm.spec.image));
            }
            let figures: Vec<_> = sending.iter().map(Sending::figures).collect();
            let copied: u64 = figures.iter().map(|f| f.acked).sum();
            let rate: u64 = figures.iter().map(|f| f.rate).sum();
            let mut p = run.outgoing.progress();
            p.phase = Some(MigrationPhase::Image);
            p.image_copied = copied.min(total);
            p.image_total = total;
            p.wire_rate = rate;
            p.eta_secs = (rate > 0).then(|| total.saturating_sub(copied) / rate);
            p.elapsed_ms = u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.publish_progress(run, p);
            if sending.iter().all(Sending::succeeded) {
                return Ok(());
            }
            if run.started.elapsed() > run.policy.budget {
                return Err(format!(
                    "image {} not sent within {} s ({copied} of {total} bytes)",
                    run.vm.spec.image,
                    run.policy.budget.as_secs()
                ));
            }
        }
    }
}
