//! [`RedbStore`]: the conformance suite, and what opening a damaged or foreign file reports.

use super::RedbStore;
use super::tables::test_access;
use crate::testing::fixtures::{image, name, quota, tenant, vm, vm_id};
use crate::testing::{Dump, Suite};
use crate::{Command, SCHEMA_VERSION, Store, StoreError};
use redb::Database;
use std::time::{Duration, Instant};
use tempfile::TempDir;

#[test]
fn redb_store_passes_the_conformance_suite() {
    let dir = TempDir::new().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let result = Suite::test_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RedbStore::open(dir.path().join(format!("case-{n}.redb")))
    });
    if let Err(failures) = result {
        panic!("{failures}");
    }
}

#[test]
fn redb_store_passes_the_persistence_suite() {
    let dir = TempDir::new().unwrap();
    if let Err(failures) = Suite::test_durable(dir.path(), |p| RedbStore::open(p)) {
        panic!("{failures}");
    }
}

/// Writes one raw value into a record table of a closed store file.
fn forge(path: &std::path::Path, table: &'static str, key: &str, value: &str) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(test_access::table(table))
        .unwrap()
        .insert(key, value)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_new_database_records_the_schema_version() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path).unwrap());
    let db = Database::create(&path).unwrap();
    let (meta, key) = test_access::schema_version();
    let txn = db.begin_read().unwrap();
    let version = txn
        .open_table(meta)
        .unwrap()
        .get(key)
        .unwrap()
        .unwrap()
        .value();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn open_refuses_a_newer_schema() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let (meta, key) = test_access::schema_version();
        let txn = db.begin_write().unwrap();
        txn.open_table(meta).unwrap().insert(key, 7).unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 7,
                supported: SCHEMA_VERSION
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("schema version 7 is newer"),
        "{err}"
    );
}

#[test]
fn open_names_the_table_and_key_of_a_corrupt_record() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path).unwrap());
    forge(
        &path,
        "tenants",
        "acme",
        "{\"name\": \"acme\", \"quota\": 3",
    );
    let err = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { table: "tenants", ref key, .. } if key == "acme"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "corrupt record in table tenants at key acme"
    );
}

#[test]
fn open_refuses_a_record_stored_under_another_key() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.apply(Command::PutImage(image(&name("debian").unwrap())))
            .unwrap();
    }
    let json = serde_json::to_string(&image(&name("debian").unwrap())).unwrap();
    forge(&path, "images", "ubuntu", &json);
    let err = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { table: "images", ref key, .. } if key == "ubuntu"),
        "{err:?}"
    );
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("for key debian"), "{source}");
}

#[test]
fn opening_a_file_already_open_is_an_error() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.redb");
    let _first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
}

#[test]
fn opening_in_a_missing_directory_is_an_error() {
    let dir = TempDir::new().unwrap();
    let err = RedbStore::open(dir.path().join("no/such/dir/s.redb")).unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
}

#[test]
fn a_reopened_store_equals_the_one_before() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("s.redb");
    let (acme, debian) = (name("acme").unwrap(), name("debian").unwrap());
    let before = {
        let s = RedbStore::open(&path).unwrap();
        s.apply(Command::PutTenant(tenant(&acme, quota(50, 50, 1 << 20))))
            .unwrap();
        s.apply(Command::PutImage(image(&debian))).unwrap();
        for i in 0..40 {
            let n = name(&format!("vm-{i}")).unwrap();
            s.apply(Command::CreateVm(vm(vm_id(i).unwrap(), &acme, &n, &debian)))
                .unwrap();
        }
        Dump::of(&s, &[])
    };
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(Dump::of(&s, &[]), before);
    assert_eq!(s.path(), path);
}

/// Reads are served from memory: listing 1,000 VMs stays far below a millisecond or two.
#[test]
fn listing_a_thousand_vms_is_fast() {
    let dir = TempDir::new().unwrap();
    let s = RedbStore::open(dir.path().join("s.redb")).unwrap();
    let (acme, debian) = (name("acme").unwrap(), name("debian").unwrap());
    s.apply(Command::PutTenant(tenant(
        &acme,
        quota(2_000, 2_000, 1 << 30),
    )))
    .unwrap();
    s.apply(Command::PutImage(image(&debian))).unwrap();
    let mut state = crate::State::new();
    for i in 0..1_000 {
        let n = name(&format!("vm-{i:04}")).unwrap();
        let record = vm(vm_id(i).unwrap(), &acme, &n, &debian);
        state.commit(vec![crate::Write::Vm(record.id, Some(record))]);
    }
    // Fill memory directly: a thousand durable commits would only slow the test down.
    s.cell.commit(
        state
            .vms(None)
            .map(|v| crate::Write::Vm(v.id, Some(v.clone())))
            .collect(),
    );
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let start = Instant::now();
        let all = s.vms(None);
        let mine = s.vms(Some(&acme));
        best = best.min(start.elapsed() / 2);
        assert_eq!((all.len(), mine.len()), (1_000, 1_000));
    }
    eprintln!("listing 1,000 VMs: {best:?}");
    assert!(best < Duration::from_millis(2), "{best:?}");
}
