use super::*;
use tokio::net::UnixListener;

/// An option reply: magic, option, type, data.
fn reply(option: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut v = REPLY_MAGIC.to_be_bytes().to_vec();
    v.extend_from_slice(&option.to_be_bytes());
    v.extend_from_slice(&kind.to_be_bytes());
    v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// `NBD_INFO_EXPORT` of a 1 MiB export with `flags`.
fn export_info(flags: u16) -> Vec<u8> {
    let mut v = INFO_EXPORT.to_be_bytes().to_vec();
    v.extend_from_slice(&(1u64 << 20).to_be_bytes());
    v.extend_from_slice(&flags.to_be_bytes());
    v
}

fn greeting() -> Vec<u8> {
    let mut v = NBD_MAGIC.to_be_bytes().to_vec();
    v.extend_from_slice(&OPT_MAGIC.to_be_bytes());
    v.extend_from_slice(&3u16.to_be_bytes());
    v
}

/// A negotiation as QEMU's server answers QEMU's client, then transmission bytes, with the
/// export's flags `flags`; and where those flags sit.
fn negotiation(flags: u16) -> (Vec<u8>, usize) {
    let mut v = greeting();
    v.extend(reply(8, REP_ACK, &[]));
    // A context for base:allocation: data that is not an export's information.
    v.extend(reply(10, 4, b"\0\0\0\x01base:allocation"));
    // Block sizes (NBD_INFO_BLOCK_SIZE), 14 bytes, which look nothing like flags.
    let mut sizes = 3u16.to_be_bytes().to_vec();
    sizes.extend_from_slice(&[0xff; 12]);
    v.extend(reply(OPT_GO, REP_INFO, &sizes));
    let at = v.len() + 20 + 10;
    v.extend(reply(OPT_GO, REP_INFO, &export_info(flags)));
    v.extend(reply(OPT_GO, REP_ACK, &[]));
    // Transmission: a simple reply whose cookie holds an export information's shape.
    v.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&export_info(0xffff)[..8]);
    (v, at)
}

fn filtered(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = FlushHidden::new(Vec::new());
    for c in chunks {
        assert_eq!(out.write(c).unwrap(), c.len());
    }
    out.inner
}

#[test]
fn the_export_flush_flag_is_cleared_and_nothing_else_changes_however_the_bytes_come() {
    let flags = 1 | FLAG_SEND_FLUSH | (1 << 3) | (1 << 8);
    let (input, at) = negotiation(flags);
    let mut expected = input.clone();
    expected[at..at + 2].copy_from_slice(&(flags & !FLAG_SEND_FLUSH).to_be_bytes());
    assert_eq!(filtered(&[&input]), expected);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(filtered(&bytes), expected);
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(filtered(&[a, b]), expected, "split at {split}");
    }
}

#[test]
fn what_is_not_a_fixed_newstyle_negotiation_passes_unchanged() {
    // Oldstyle: NBDMAGIC, then the magic 0x00420281861253, size and flags.
    let mut old = NBD_MAGIC.to_be_bytes().to_vec();
    old.extend_from_slice(&0x0000_4202_8186_1253_u64.to_be_bytes());
    old.extend_from_slice(&export_info(0xffff));
    old.extend_from_slice(&[0; 124]);
    assert_eq!(filtered(&[&old]), old);
    // A reply with a wrong magic: the rest passes as it is.
    let mut odd = greeting();
    odd.extend_from_slice(&[0xaa; 20]);
    odd.extend(reply(OPT_GO, REP_INFO, &export_info(0xffff)));
    assert_eq!(filtered(&[&odd]), odd);
}

/// A fake NBD server on a socket in a fresh directory, answering one client with `flags`
/// for export `disk0` and `flush_error` to its flush; returns the socket's path, the
/// directory, and the task, which ends with the commands it received.
fn fake_server(
    flags: u16,
    flush_error: u32,
) -> (
    std::path::PathBuf,
    tempfile::TempDir,
    tokio::task::JoinHandle<Vec<u16>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nbd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        c.write_all(&greeting()).await.unwrap();
        let mut client_flags = [0u8; 4];
        c.read_exact(&mut client_flags).await.unwrap();
        assert_eq!(u32::from_be_bytes(client_flags), CLIENT_FLAGS);
        let mut header = [0u8; 16];
        c.read_exact(&mut header).await.unwrap();
        assert_eq!(u64_at(&header, 0), Some(OPT_MAGIC));
        assert_eq!(u32_at(&header, 8), Some(OPT_GO));
        let mut data = vec![0u8; u32_at(&header, 12).unwrap() as usize];
        c.read_exact(&mut data).await.unwrap();
        if &data[4..data.len() - 2] != b"disk0" {
            c.write_all(&reply(OPT_GO, REP_ERROR | 6, b"no such export"))
                .await
                .unwrap();
            return Vec::new();
        }
        c.write_all(&reply(OPT_GO, REP_INFO, &export_info(flags)))
            .await
            .unwrap();
        c.write_all(&reply(OPT_GO, REP_ACK, &[])).await.unwrap();
        let mut commands = Vec::new();
        let mut request = [0u8; 28];
        while c.read_exact(&mut request).await.is_ok() {
            assert_eq!(u32_at(&request, 0), Some(REQUEST_MAGIC));
            let kind = u16_at(&request, 6).unwrap();
            commands.push(kind);
            if kind == CMD_FLUSH {
                let mut r = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
                r.extend_from_slice(&flush_error.to_be_bytes());
                r.extend_from_slice(&request[8..16]);
                c.write_all(&r).await.unwrap();
            }
            if kind == CMD_DISC {
                break;
            }
        }
        commands
    });
    (path, dir, task)
}

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn flush_opens_the_export_flushes_it_and_disconnects() {
    let (path, _dir, server) = fake_server(1 | FLAG_SEND_FLUSH, 0);
    flush(&path, "disk0", LIMIT).await.unwrap();
    assert_eq!(server.await.unwrap(), vec![CMD_FLUSH, CMD_DISC]);
}

#[tokio::test]
async fn a_failed_flush_an_unknown_export_or_no_flush_at_all_is_an_error() {
    let (path, _dir, server) = fake_server(1 | FLAG_SEND_FLUSH, 5);
    let e = flush(&path, "disk0", LIMIT).await.unwrap_err();
    assert!(e.to_string().contains("the flush failed (error 5)"), "{e}");
    server.await.unwrap();

    let (path, _dir, server) = fake_server(1 | FLAG_SEND_FLUSH, 0);
    let e = flush(&path, "disk9", LIMIT).await.unwrap_err();
    assert!(e.to_string().contains("\"disk9\" refused"), "{e}");
    server.await.unwrap();

    let (path, _dir, server) = fake_server(1, 0);
    let e = flush(&path, "disk0", LIMIT).await.unwrap_err();
    assert!(e.to_string().contains("takes no flush"), "{e}");
    assert_eq!(server.await.unwrap(), vec![CMD_DISC]);

    let dir = tempfile::tempdir().unwrap();
    let e = flush(&dir.path().join("none.sock"), "disk0", LIMIT)
        .await
        .unwrap_err();
    assert!(matches!(e, NbdError::Io { .. }), "{e}");
}
