//! `qemu-img` on real files.

use novacron_qemu::img::{self, ImgError, QEMU_IMG_BINARY};

use crate::fixtures::require;

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn overlay_on_a_qcow2_base_records_base_path_and_format() {
    require!(QEMU_IMG_BINARY);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let overlay = dir.path().join("vm1.qcow2");
    img::create(&base, "qcow2", 10 * MIB).await.unwrap();

    img::create_overlay(&base, &overlay, None).await.unwrap();
    let info = img::info(&overlay).await.unwrap();
    assert_eq!(info.format, "qcow2");
    assert_eq!(info.virtual_size, 10 * MIB);
    assert!(info.actual_size.unwrap() > 0);
    assert_eq!(info.backing, Some(std::fs::canonicalize(&base).unwrap()));
    assert_eq!(info.backing_format.as_deref(), Some("qcow2"));

    let base_info = img::info(&base).await.unwrap();
    assert_eq!(base_info.backing, None);
}

#[tokio::test]
async fn rebase_points_an_overlay_at_a_base_of_another_path_and_format() {
    require!(QEMU_IMG_BINARY);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.qcow2");
    let second = dir.path().join("second.raw");
    let overlay = dir.path().join("vm1.qcow2");
    img::create(&first, "qcow2", 10 * MIB).await.unwrap();
    img::create(&second, "raw", 10 * MIB).await.unwrap();
    img::create_overlay(&first, &overlay, None).await.unwrap();

    img::rebase_unsafe(&overlay, &second).await.unwrap();
    let info = img::info(&overlay).await.unwrap();
    assert_eq!(info.backing, Some(std::fs::canonicalize(&second).unwrap()));
    assert_eq!(info.backing_format.as_deref(), Some("raw"));
    assert_eq!(info.virtual_size, 10 * MIB);
}

#[tokio::test]
async fn overlay_may_be_larger_than_a_raw_base() {
    require!(QEMU_IMG_BINARY);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let overlay = dir.path().join("big.qcow2");
    img::create(&base, "raw", 4 * MIB).await.unwrap();

    img::create_overlay(&base, &overlay, Some(32 * MIB))
        .await
        .unwrap();
    let info = img::info(&overlay).await.unwrap();
    assert_eq!(info.virtual_size, 32 * MIB);
    assert_eq!(info.backing_format.as_deref(), Some("raw"));
}

#[tokio::test]
async fn convert_flattens_an_overlay() {
    require!(QEMU_IMG_BINARY);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let overlay = dir.path().join("top.qcow2");
    let flat = dir.path().join("flat.qcow2");
    img::create(&base, "qcow2", 2 * MIB).await.unwrap();
    img::create_overlay(&base, &overlay, None).await.unwrap();
    img::convert(&overlay, &flat, "qcow2", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let info = img::info(&flat).await.unwrap();
    assert_eq!(info.backing, None);
    assert_eq!(info.virtual_size, 2 * MIB);
}

#[tokio::test]
async fn info_of_a_missing_image_carries_the_tool_message() {
    require!(QEMU_IMG_BINARY);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.qcow2");
    let err = img::info(&missing).await.unwrap_err();
    let ImgError::Failed {
        subcommand, stderr, ..
    } = &err
    else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(*subcommand, "info");
    assert!(stderr.contains("nope.qcow2"), "{stderr}");
}

#[tokio::test]
async fn overlay_of_a_missing_base_is_refused_before_running_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let err = img::create_overlay(&dir.path().join("none"), &dir.path().join("o"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImgError::Resolve { .. }), "{err:?}");
}
