//! The database layout: one table per record kind, JSON values, and a `meta` table.
//!
//! ```text
//!   meta        "schema_version" → u64
//!   tenants     name             → Tenant (JSON)
//!   tokens      id (uuid text)   → TokenRecord (JSON)
//!   images      name             → Image (JSON)
//!   vms         id (uuid text)   → Vm (JSON)
//!   operations  id (uuid text)   → Operation (JSON)
//! ```
//!
//! JSON keeps records readable with any redb tool and lets fields be added with serde defaults
//! without a schema bump; only a change an older build would misread bumps
//! [`SCHEMA_VERSION`].

use crate::StoreError;
use crate::state::{State, Write};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The database schema version this build writes, and the newest it opens.
pub const SCHEMA_VERSION: u64 = 1;

/// Key of the schema version in [`META`].
const SCHEMA_KEY: &str = "schema_version";

const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

/// Names of the record tables.
const TENANTS: &str = "tenants";
const TOKENS: &str = "tokens";
const IMAGES: &str = "images";
const VMS: &str = "vms";
const OPERATIONS: &str = "operations";

/// Every record table, for creation at open.
const RECORD_TABLES: [&str; 5] = [TENANTS, TOKENS, IMAGES, VMS, OPERATIONS];

/// A record table: text keys, JSON text values.
type RecordTable = TableDefinition<'static, &'static str, &'static str>;

const fn record_table(name: &'static str) -> RecordTable {
    TableDefinition::new(name)
}

/// Creates the tables of a new database and records its schema version, or checks the version
/// of an existing one.
///
/// # Errors
/// [`StoreError::SchemaTooNew`] for a database from a newer build; [`StoreError::Database`] if
/// the tables cannot be opened.
pub(crate) fn prepare(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    let found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
    match found {
        Some(found) if found > SCHEMA_VERSION => {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Some(_) => {}
        None => {
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
        }
    }
    for table in RECORD_TABLES {
        txn.open_table(record_table(table))?;
    }
    Ok(())
}

/// Reads every record into a [`State`].
///
/// # Errors
/// [`StoreError::Corrupt`] naming the first record that does not decode or whose key does not
/// match its content; [`StoreError::Database`] if reading fails.
pub(crate) fn load(txn: &ReadTransaction) -> Result<State, StoreError> {
    let mut writes = Vec::new();
    load_table(txn, TENANTS, &mut writes, |t: novacron_model::Tenant| {
        (t.name.to_string(), Write::Tenant(t.name.clone(), Some(t)))
    })?;
    load_table(
        txn,
        TOKENS,
        &mut writes,
        |t: novacron_model::TokenRecord| (t.id.to_string(), Write::Token(t.id, Some(t))),
    )?;
    load_table(txn, IMAGES, &mut writes, |i: novacron_model::Image| {
        (i.name.to_string(), Write::Image(i.name.clone(), Some(i)))
    })?;
    load_table(txn, VMS, &mut writes, |vm: novacron_model::Vm| {
        (vm.id.to_string(), Write::Vm(vm.id, Some(vm)))
    })?;
    load_table(
        txn,
        OPERATIONS,
        &mut writes,
        |op: novacron_model::Operation| (op.id.to_string(), Write::Operation(op.id, Some(op))),
    )?;
    let mut state = State::new();
    state.commit(writes);
    Ok(state)
}

/// Decodes every record of `table`; `keyed` returns the key the record belongs under and its
/// write.
fn load_table<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: &'static str,
    writes: &mut Vec<Write>,
    keyed: impl Fn(T) -> (String, Write),
) -> Result<(), StoreError> {
    for entry in txn.open_table(record_table(table))?.iter()? {
        let (key, value) = entry?;
        let key = key.value();
        let corrupt = |source| StoreError::Corrupt {
            table,
            key: key.to_owned(),
            source,
        };
        let record: T = serde_json::from_str(value.value()).map_err(corrupt)?;
        let (expected, write) = keyed(record);
        if expected != key {
            return Err(corrupt(serde::de::Error::custom(format_args!(
                "the record is for key {expected}"
            ))));
        }
        writes.push(write);
    }
    Ok(())
}

/// Persists `writes` in `txn`.
///
/// # Errors
/// [`StoreError::Encode`] if a record does not encode; [`StoreError::Database`] if a table
/// cannot be written.
pub(crate) fn persist(txn: &WriteTransaction, writes: &[Write]) -> Result<(), StoreError> {
    for w in writes {
        match w {
            Write::Tenant(name, t) => put(txn, TENANTS, name.as_str(), t.as_ref())?,
            Write::Token(id, t) => put(txn, TOKENS, &id.to_string(), t.as_ref())?,
            Write::Image(name, i) => put(txn, IMAGES, name.as_str(), i.as_ref())?,
            Write::Vm(id, vm) => put(txn, VMS, &id.to_string(), vm.as_ref())?,
            Write::Operation(id, op) => put(txn, OPERATIONS, &id.to_string(), op.as_ref())?,
        }
    }
    Ok(())
}

/// Stores `record` under `key`, or removes `key` when `record` is `None`.
fn put<T: Serialize>(
    txn: &WriteTransaction,
    table: &'static str,
    key: &str,
    record: Option<&T>,
) -> Result<(), StoreError> {
    let mut t = txn.open_table(record_table(table))?;
    match record {
        Some(r) => {
            let json = serde_json::to_string(r).map_err(|source| StoreError::Encode {
                table,
                key: key.to_owned(),
                source,
            })?;
            t.insert(key, json.as_str())?;
        }
        None => {
            t.remove(key)?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_access {
    //! Raw table access for tests that damage or forge a database file.

    use super::{META, RecordTable, SCHEMA_KEY, TableDefinition, record_table};

    /// The record table called `name`.
    pub(crate) const fn table(name: &'static str) -> RecordTable {
        record_table(name)
    }

    /// The meta table and the key of the schema version in it.
    pub(crate) fn schema_version() -> (TableDefinition<'static, &'static str, u64>, &'static str) {
        (META, SCHEMA_KEY)
    }
}
