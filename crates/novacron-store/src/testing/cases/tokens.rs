//! Tokens: put (create or replace), lookup by secret hash, list, delete and refusals.

use super::world;
use crate::testing::fixtures::{name, token, token_id};
use crate::testing::{Failure, ensure_eq, ensure_matches};
use crate::{Command, Store, StoreError};
use novacron_model::{Role, Timestamp, TokenRecord};

pub(super) fn put_token_is_found_by_hash_and_listed_for_its_tenant(
    s: &dyn Store,
) -> Result<(), Failure> {
    let w = world(s)?;
    let older = TokenRecord {
        created_at: Timestamp(500),
        ..token(token_id(9)?, &w.acme, "hash-older")
    };
    let newer = token(token_id(1)?, &w.acme, "hash-newer");
    let other = token(token_id(5)?, &w.globex, "hash-globex");
    for t in [&newer, &other, &older] {
        s.apply(Command::PutToken(t.clone()))?;
    }
    ensure_eq!(s.token_by_hash("hash-newer"), Some(newer.clone()));
    ensure_eq!(s.token_by_hash("hash-globex"), Some(other.clone()));
    ensure_eq!(s.token_by_hash("hash-unknown"), None);
    ensure_eq!(s.tokens(&w.acme), vec![older, newer]);
    ensure_eq!(s.tokens(&w.globex), vec![other]);
    ensure_eq!(s.tokens(&name("nobody")?), Vec::new());
    Ok(())
}

pub(super) fn put_token_refuses_an_unknown_tenant(s: &dyn Store) -> Result<(), Failure> {
    let refused = s.apply(Command::PutToken(token(
        token_id(1)?,
        &name("nobody")?,
        "h",
    )));
    ensure_matches!(
        refused,
        Err(StoreError::NotFound { kind: "tenant", ref key }) if key == "nobody"
    );
    ensure_eq!(s.token_by_hash("h"), None);
    Ok(())
}

pub(super) fn put_token_refuses_a_secret_hash_in_use(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let first = token(token_id(1)?, &w.acme, "same");
    s.apply(Command::PutToken(first.clone()))?;
    ensure_matches!(
        s.apply(Command::PutToken(token(token_id(2)?, &w.globex, "same"))),
        Err(StoreError::AlreadyExists {
            kind: "token secret hash",
            ..
        })
    );
    ensure_eq!(s.token_by_hash("same"), Some(first));
    ensure_eq!(s.tokens(&w.globex), Vec::new());
    Ok(())
}

pub(super) fn put_token_refuses_an_empty_secret_hash(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    ensure_matches!(
        s.apply(Command::PutToken(token(token_id(1)?, &w.acme, ""))),
        Err(StoreError::Invalid { .. })
    );
    ensure_eq!(s.tokens(&w.acme), Vec::new());
    Ok(())
}

pub(super) fn put_token_replaces_the_token_with_the_same_id(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let id = token_id(1)?;
    s.apply(Command::PutToken(token(id, &w.acme, "old")))?;
    let replaced = TokenRecord {
        role: Role::Admin,
        ..token(id, &w.acme, "new")
    };
    s.apply(Command::PutToken(replaced.clone()))?;
    ensure_eq!(s.token_by_hash("old"), None);
    ensure_eq!(s.token_by_hash("new"), Some(replaced.clone()));
    ensure_eq!(s.tokens(&w.acme), vec![replaced]);
    // Its old secret hash is free again.
    s.apply(Command::PutToken(token(token_id(2)?, &w.acme, "old")))?;
    Ok(())
}

pub(super) fn delete_token_removes_it_and_its_hash(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let id = token_id(1)?;
    s.apply(Command::PutToken(token(id, &w.acme, "h")))?;
    s.apply(Command::DeleteToken(id))?;
    ensure_eq!(s.token_by_hash("h"), None);
    ensure_eq!(s.tokens(&w.acme), Vec::new());
    Ok(())
}

pub(super) fn delete_token_refuses_a_missing_token(s: &dyn Store) -> Result<(), Failure> {
    let id = token_id(7)?;
    ensure_matches!(
        s.apply(Command::DeleteToken(id)),
        Err(StoreError::NotFound { kind: "token", ref key }) if *key == id.to_string()
    );
    Ok(())
}
