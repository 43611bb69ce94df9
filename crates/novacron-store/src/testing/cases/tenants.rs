//! Tenants: put (create or update), list, delete and its refusals.

use super::world;
use crate::testing::fixtures::{name, quota, tenant, token, token_id, vm, vm_id};
use crate::testing::{Failure, ensure_eq, ensure_matches};
use crate::{Command, Store, StoreError};
use novacron_model::{Tenant, Timestamp};

pub(super) fn put_tenant_creates_then_updates_its_quota(s: &dyn Store) -> Result<(), Failure> {
    let acme = name("acme")?;
    ensure_eq!(s.tenant(&acme), None);
    let first = tenant(&acme, quota(1, 2, 64));
    s.apply(Command::PutTenant(first.clone()))?;
    ensure_eq!(s.tenant(&acme), Some(first.clone()));
    s.apply(Command::PutTenant(Tenant {
        quota: quota(5, 6, 128),
        created_at: Timestamp(9_999),
        ..first.clone()
    }))?;
    // The quota changes; the creation time stays.
    ensure_eq!(
        s.tenant(&acme),
        Some(Tenant {
            quota: quota(5, 6, 128),
            ..first
        })
    );
    ensure_eq!(s.tenants().len(), 1);
    Ok(())
}

pub(super) fn tenants_are_listed_by_name(s: &dyn Store) -> Result<(), Failure> {
    for n in ["bravo", "alpha", "charlie"] {
        s.apply(Command::PutTenant(tenant(&name(n)?, quota(1, 1, 16))))?;
    }
    let names: Vec<String> = s.tenants().iter().map(|t| t.name.to_string()).collect();
    ensure_eq!(names, ["alpha", "bravo", "charlie"]);
    Ok(())
}

pub(super) fn delete_tenant_removes_it(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    s.apply(Command::DeleteTenant(w.acme.clone()))?;
    ensure_eq!(s.tenant(&w.acme), None);
    ensure_eq!(s.tenants().len(), 1);
    Ok(())
}

pub(super) fn delete_tenant_refuses_a_missing_tenant(s: &dyn Store) -> Result<(), Failure> {
    ensure_matches!(
        s.apply(Command::DeleteTenant(name("nobody")?)),
        Err(StoreError::NotFound { kind: "tenant", ref key }) if key == "nobody"
    );
    Ok(())
}

pub(super) fn delete_tenant_refuses_while_it_has_vms(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let id = vm_id(1)?;
    s.apply(Command::CreateVm(vm(id, &w.acme, &name("web")?, &w.debian)))?;
    let refused = s.apply(Command::DeleteTenant(w.acme.clone()));
    ensure_matches!(
        refused,
        Err(StoreError::InUse { kind: "tenant", ref key, ref by }) if key == "acme" && by == "1 vm"
    );
    ensure_eq!(s.tenant(&w.acme).is_some(), true);
    s.apply(Command::DeleteVm {
        id,
        expect_state: None,
    })?;
    s.apply(Command::DeleteTenant(w.acme.clone()))?;
    ensure_eq!(s.tenant(&w.acme), None);
    Ok(())
}

pub(super) fn delete_tenant_refuses_while_it_has_tokens(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let id = token_id(1)?;
    s.apply(Command::PutToken(token(id, &w.acme, "aa")))?;
    s.apply(Command::PutToken(token(token_id(2)?, &w.acme, "bb")))?;
    ensure_matches!(
        s.apply(Command::DeleteTenant(w.acme.clone())),
        Err(StoreError::InUse { kind: "tenant", ref by, .. }) if by == "2 tokens"
    );
    s.apply(Command::DeleteToken(id))?;
    s.apply(Command::DeleteToken(token_id(2)?))?;
    s.apply(Command::DeleteTenant(w.acme.clone()))?;
    ensure_eq!(s.tenant(&w.acme), None);
    Ok(())
}
