//! Property test: random command sequences applied to [`RedbStore`] and to a naive model give
//! the same outcome per command and the same reads after each; reopening the store changes
//! none of its reads.

mod model;

use crate::testing::fixtures::{image, operation, quota, tenant, token, vm};
use crate::testing::{Dump, TenantDump};
use crate::{Command, RedbStore, Store};
use model::{Model, refusal};
use novacron_model::{
    ByteSize, Name, OperationId, OperationStatus, Timestamp, TokenId, Vm, VmId, VmState,
};
use proptest::prelude::*;
use proptest::sample::select;
use tempfile::TempDir;

const TENANTS: &[&str] = &["t0", "t1", "t2"];
const IMAGES: &[&str] = &["i0", "i1"];
const VM_NAMES: &[&str] = &["v0", "v1", "v2"];
const HASHES: &[&str] = &["", "h0", "h1", "h2"];
/// Ids are drawn from `0..IDS`, so that commands collide often.
const IDS: u128 = 6;

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn vm_id(i: u128) -> VmId {
    crate::testing::fixtures::vm_id(i).unwrap()
}

fn token_id(i: u128) -> TokenId {
    crate::testing::fixtures::token_id(i).unwrap()
}

fn operation_id(i: u128) -> OperationId {
    crate::testing::fixtures::operation_id(i).unwrap()
}

fn name_in(pool: &'static [&'static str]) -> impl Strategy<Value = Name> {
    select(pool).prop_map(n)
}

fn time() -> impl Strategy<Value = Timestamp> {
    (0u64..40).prop_map(Timestamp)
}

fn vm_state() -> impl Strategy<Value = VmState> {
    select(VmState::ALL.to_vec())
}

/// A step of a test run. VM updates and deletes are resolved against the model when they run,
/// so that many of them name a VM that exists, in its current state.
#[derive(Clone, Debug)]
enum Step {
    Direct(Box<Command>),
    UpdateVm {
        id: u128,
        state: VmState,
        /// The state to expect; `None` expects the VM's current state.
        stale: Option<VmState>,
        /// 0..=3 change nothing else; 4 tenant, 5 name, 6 spec, 7 creation time.
        change: u8,
    },
    DeleteVm {
        id: u128,
        /// `Some(None)` expects the current state.
        expect: Option<Option<VmState>>,
    },
}

fn direct() -> impl Strategy<Value = Command> {
    let put_tenant = (name_in(TENANTS), 0u32..6, 0u32..12, 0u64..12)
        .prop_map(|(t, v, c, m)| Command::PutTenant(tenant(&t, quota(v, c, m * 64))));
    let put_token =
        (0..IDS, name_in(TENANTS), select(HASHES), time()).prop_map(|(id, t, hash, created)| {
            let mut record = token(token_id(id), &t, hash);
            record.created_at = created;
            Command::PutToken(record)
        });
    let put_image = (name_in(IMAGES), prop::bool::ANY).prop_map(|(i, small)| {
        let mut record = image(&i);
        if small {
            record.virtual_size = ByteSize::mib(512);
        }
        Command::PutImage(record)
    });
    let create_vm = (
        0..IDS,
        // Mostly the tenant and image that the setup made, mostly valid specs.
        name_in(&["t0", "t0", "t1", "t2"]),
        name_in(VM_NAMES),
        name_in(&["i0", "i0", "i0", "i1"]),
        select(vec![0u32, 1, 1, 1, 1, 2, 2, 3]),
        select(vec![8u64, 16, 64, 64, 64, 64, 128, 128]),
        select(vec![
            None,
            None,
            None,
            None,
            None,
            Some(512u64),
            Some(1024),
            Some(2048),
        ]),
    )
        .prop_map(|(id, t, name, i, vcpus, mib, disk)| {
            let mut record = vm(vm_id(id), &t, &name, &i);
            record.spec.vcpus = vcpus;
            record.spec.memory = ByteSize::mib(mib);
            record.spec.disk_size = disk.map(ByteSize::mib);
            Command::CreateVm(record)
        });
    let put_operation = (
        0..IDS,
        name_in(TENANTS),
        time(),
        prop::option::of(time()),
        select(vec![
            OperationStatus::Running,
            OperationStatus::Succeeded,
            OperationStatus::Failed,
        ]),
    )
        .prop_map(|(id, t, created, finished, status)| {
            let mut op = operation(operation_id(id), &t, created, finished);
            op.status = status;
            Command::PutOperation(op)
        });
    prop_oneof![
        2 => put_tenant,
        1 => name_in(TENANTS).prop_map(Command::DeleteTenant),
        2 => put_token,
        1 => (0..IDS).prop_map(|id| Command::DeleteToken(token_id(id))),
        2 => put_image,
        1 => name_in(IMAGES).prop_map(Command::DeleteImage),
        6 => create_vm,
        2 => put_operation,
        1 => time().prop_map(|t| Command::PruneOperations { finished_before: t }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => direct().prop_map(|c| Step::Direct(Box::new(c))),
        2 => (0..IDS, vm_state(), prop::option::weighted(0.3, vm_state()), 0u8..8)
            .prop_map(|(id, state, stale, change)| Step::UpdateVm { id, state, stale, change }),
        1 => (0..IDS, prop::option::of(prop::option::of(vm_state())))
            .prop_map(|(id, expect)| Step::DeleteVm { id, expect }),
    ]
}

/// Mostly one of the model's VMs (picked by `i`), sometimes (or when there is none) the VM
/// with id `i` if it exists.
fn existing_or(model: &Model, i: u128) -> Option<Vm> {
    let i = usize::try_from(i).unwrap();
    model
        .vms
        .get(i % (model.vms.len() + 1))
        .or_else(|| model.vm(vm_id(u128::try_from(i).unwrap())))
        .cloned()
}

/// The command a step stands for, given what the model holds.
fn resolve(step: Step, model: &Model) -> Command {
    match step {
        Step::Direct(c) => *c,
        Step::UpdateVm {
            id,
            state,
            stale,
            change,
        } => {
            let current = existing_or(model, id)
                .unwrap_or_else(|| vm(vm_id(id), &n("t0"), &n("v0"), &n("i0")));
            let expect_state = stale.unwrap_or(current.state);
            let mut next = Vm {
                state,
                state_reason: (state == VmState::Failed).then(|| "exit status 1".into()),
                updated_at: Timestamp(current.updated_at.0 + 1),
                ..current
            };
            match change {
                4 => {
                    next.tenant = n(if next.tenant.as_str() == "t0" {
                        "t1"
                    } else {
                        "t0"
                    })
                }
                5 => next.spec.name = n("renamed"),
                6 => next.spec.vcpus += 1,
                7 => next.created_at = Timestamp(1),
                _ => {}
            }
            Command::UpdateVm {
                vm: next,
                expect_state,
            }
        }
        Step::DeleteVm { id, expect } => {
            let target = existing_or(model, id).map_or(vm_id(id), |v| v.id);
            let current = model.vm(target).map(|v| v.state);
            Command::DeleteVm {
                id: target,
                expect_state: match expect {
                    Some(None) => current,
                    Some(Some(s)) => Some(s),
                    None => None,
                },
            }
        }
    }
}

fn pool(names: &[&str]) -> Vec<Name> {
    names.iter().map(|s| n(s)).collect()
}

/// What the model says [`Dump::of`] must read.
fn model_dump(model: &Model) -> Dump {
    let sorted = |mut vms: Vec<Vm>| {
        vms.sort_by(|a, b| (&a.spec.name, a.id).cmp(&(&b.spec.name, b.id)));
        vms
    };
    let mut tenants = model.tenants.clone();
    tenants.sort_by(|a, b| a.name.cmp(&b.name));
    let mut images = model.images.clone();
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let per_tenant = pool(TENANTS)
        .into_iter()
        .map(|t| {
            let mut tokens: Vec<_> = model
                .tokens
                .iter()
                .filter(|x| x.tenant == t)
                .cloned()
                .collect();
            tokens.sort_by_key(|x| (x.created_at, x.id));
            let mut operations: Vec<_> = model
                .operations
                .iter()
                .filter(|o| o.tenant == t)
                .cloned()
                .collect();
            operations.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id)));
            TenantDump {
                vms: sorted(
                    model
                        .vms
                        .iter()
                        .filter(|v| v.tenant == t)
                        .cloned()
                        .collect(),
                ),
                tokens,
                operations,
                usage: model.usage(&t),
                name: t,
            }
        })
        .collect();
    Dump {
        tenants,
        images,
        vms: sorted(model.vms.clone()),
        per_tenant,
    }
}

/// Checks every read of `store` against the model.
fn agree(store: &dyn Store, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(Dump::of(store, &pool(TENANTS)), model_dump(model));
    for i in 0..IDS {
        prop_assert_eq!(store.vm(vm_id(i)), model.vm(vm_id(i)).cloned());
        prop_assert_eq!(
            store.operation(operation_id(i)),
            model.operation(operation_id(i)).cloned()
        );
        if let Some(t) = model.token(token_id(i)) {
            prop_assert_eq!(store.token_by_hash(&t.secret_hash), Some(t.clone()));
        }
    }
    for hash in HASHES {
        let expected = model.tokens.iter().find(|t| t.secret_hash == *hash);
        prop_assert_eq!(store.token_by_hash(hash), expected.cloned());
    }
    for t in pool(TENANTS) {
        prop_assert_eq!(store.tenant(&t), model.tenant(&t).cloned());
        for name in pool(VM_NAMES) {
            let expected = model
                .vms
                .iter()
                .find(|v| v.tenant == t && v.spec.name == name);
            prop_assert_eq!(store.vm_by_name(&t, &name), expected.cloned());
        }
        let all = store.operations(&t, usize::MAX);
        let first_two = store.operations(&t, 2);
        prop_assert_eq!(first_two.as_slice(), all.get(..2).unwrap_or(&all));
    }
    for i in pool(IMAGES) {
        prop_assert_eq!(store.image(&i), model.image(&i).cloned());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn redb_store_agrees_with_a_model_and_survives_a_reopen(
        steps in prop::collection::vec(step(), 1..48),
    ) {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("s.redb");
        let store = RedbStore::open(&path).unwrap();
        let mut model = Model::default();
        // Start from two tenants and an image, so that most VM commands have something to act
        // on; the random steps may change or delete them.
        let setup = [
            Command::PutTenant(tenant(&n("t0"), quota(4, 8, 512))),
            Command::PutTenant(tenant(&n("t1"), quota(2, 4, 256))),
            Command::PutImage(image(&n("i0"))),
        ];
        for command in setup {
            model.apply(&command).unwrap();
            store.apply(command).unwrap();
        }
        for s in steps {
            let command = resolve(s, &model);
            let expected = model.apply(&command);
            let got = store.apply(command.clone()).map_err(|e| refusal(&e));
            prop_assert_eq!(got, expected, "{:?}", command);
            agree(&store, &model)?;
        }
        let before = Dump::of(&store, &pool(TENANTS));
        drop(store);
        let reopened = RedbStore::open(&path).unwrap();
        prop_assert_eq!(Dump::of(&reopened, &pool(TENANTS)), before);
        agree(&reopened, &model)?;
    }
}
