//! The suite's cases, one file per area, and the fixture world most of them start from.

mod durable;
mod images;
mod operations;
mod quota;
mod tenants;
mod tokens;
mod vm_changes;
mod vms;

use super::fixtures::{image, name, quota, tenant};
use super::{Case, DurableCase, Failure};
use crate::{Command, Store};
use novacron_model::Name;

/// Every behaviour case, by name.
pub(super) fn all() -> Vec<(&'static str, Case)> {
    macro_rules! cases {
        ($($module:ident::$case:ident),* $(,)?) => {
            vec![$((stringify!($case), $module::$case as Case)),*]
        };
    }
    cases![
        tenants::put_tenant_creates_then_updates_its_quota,
        tenants::tenants_are_listed_by_name,
        tenants::delete_tenant_removes_it,
        tenants::delete_tenant_refuses_a_missing_tenant,
        tenants::delete_tenant_refuses_while_it_has_vms,
        tenants::delete_tenant_refuses_while_it_has_tokens,
        tokens::put_token_is_found_by_hash_and_listed_for_its_tenant,
        tokens::put_token_refuses_an_unknown_tenant,
        tokens::put_token_refuses_a_secret_hash_in_use,
        tokens::put_token_refuses_an_empty_secret_hash,
        tokens::put_token_replaces_the_token_with_the_same_id,
        tokens::delete_token_removes_it_and_its_hash,
        tokens::delete_token_refuses_a_missing_token,
        images::put_image_stores_it_and_images_are_listed_by_name,
        images::put_image_refuses_a_name_in_use,
        images::delete_image_refuses_while_a_vm_uses_it,
        images::delete_image_refuses_a_missing_image,
        vms::create_vm_is_read_by_id_and_by_name,
        vms::create_vm_refuses_an_unknown_tenant,
        vms::create_vm_refuses_an_unknown_image,
        vms::create_vm_refuses_an_invalid_spec,
        vms::create_vm_refuses_a_disk_smaller_than_the_image,
        vms::create_vm_refuses_a_name_in_use_within_the_tenant,
        vms::create_vm_refuses_an_id_in_use,
        vms::vms_are_listed_by_name_then_id,
        vms::refused_commands_change_nothing,
        vm_changes::update_vm_replaces_the_record_in_the_expected_state,
        vm_changes::update_vm_refuses_a_stale_state,
        vm_changes::update_vm_refuses_a_missing_vm,
        vm_changes::update_vm_refuses_changing_immutable_fields,
        vm_changes::delete_vm_removes_it_and_frees_its_name,
        vm_changes::delete_vm_checks_the_expected_state,
        vm_changes::delete_vm_refuses_a_missing_vm,
        quota::create_vm_refuses_more_vms_than_the_quota,
        quota::create_vm_refuses_more_vcpus_than_the_quota,
        quota::create_vm_refuses_more_memory_than_the_quota,
        quota::quota_counts_vms_in_every_state,
        quota::quota_and_usage_are_per_tenant,
        quota::lowering_a_quota_keeps_vms_and_refuses_new_ones,
        quota::concurrent_creates_never_exceed_the_quota,
        operations::put_operation_inserts_and_replaces,
        operations::operations_are_listed_newest_first_up_to_the_limit,
        operations::prune_removes_only_operations_finished_before_the_time,
    ]
}

/// Every persistence case, by name.
pub(super) fn durable() -> Vec<(&'static str, DurableCase)> {
    vec![
        (
            "records_survive_a_reopen",
            durable::records_survive_a_reopen as DurableCase,
        ),
        (
            "a_reopened_store_enforces_what_it_loaded",
            durable::a_reopened_store_enforces_what_it_loaded,
        ),
    ]
}

/// Two tenants (`acme`, `globex`, each allowed 10 VMs, 20 vCPUs, 4 GiB) and one image
/// (`debian`).
struct World {
    acme: Name,
    globex: Name,
    debian: Name,
}

fn world(s: &dyn Store) -> Result<World, Failure> {
    let w = World {
        acme: name("acme")?,
        globex: name("globex")?,
        debian: name("debian")?,
    };
    s.apply(Command::PutTenant(tenant(&w.acme, quota(10, 20, 4096))))?;
    s.apply(Command::PutTenant(tenant(&w.globex, quota(10, 20, 4096))))?;
    s.apply(Command::PutImage(image(&w.debian)))?;
    Ok(w)
}
