//! Images: put (create only), list, delete and its refusals.

use super::world;
use crate::testing::fixtures::{image, name, vm, vm_id};
use crate::testing::{Failure, ensure_eq, ensure_matches};
use crate::{Command, Store, StoreError};
use novacron_model::{ByteSize, Image};

pub(super) fn put_image_stores_it_and_images_are_listed_by_name(
    s: &dyn Store,
) -> Result<(), Failure> {
    for n in ["ubuntu", "alpine", "debian"] {
        s.apply(Command::PutImage(image(&name(n)?)))?;
    }
    let alpine = name("alpine")?;
    ensure_eq!(s.image(&alpine), Some(image(&alpine)));
    ensure_eq!(s.image(&name("fedora")?), None);
    let names: Vec<String> = s.images().iter().map(|i| i.name.to_string()).collect();
    ensure_eq!(names, ["alpine", "debian", "ubuntu"]);
    Ok(())
}

pub(super) fn put_image_refuses_a_name_in_use(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let other = Image {
        virtual_size: ByteSize::mib(1),
        ..image(&w.debian)
    };
    ensure_matches!(
        s.apply(Command::PutImage(other)),
        Err(StoreError::AlreadyExists { kind: "image", ref key }) if key == "debian"
    );
    ensure_eq!(s.image(&w.debian), Some(image(&w.debian)));
    Ok(())
}

pub(super) fn delete_image_refuses_while_a_vm_uses_it(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let (a, b) = (vm_id(1)?, vm_id(2)?);
    s.apply(Command::CreateVm(vm(a, &w.acme, &name("web")?, &w.debian)))?;
    s.apply(Command::CreateVm(vm(b, &w.globex, &name("db")?, &w.debian)))?;
    ensure_matches!(
        s.apply(Command::DeleteImage(w.debian.clone())),
        Err(StoreError::InUse { kind: "image", ref key, .. }) if key == "debian"
    );
    s.apply(Command::DeleteVm {
        id: a,
        expect_state: None,
    })?;
    ensure_matches!(
        s.apply(Command::DeleteImage(w.debian.clone())),
        Err(StoreError::InUse { kind: "image", ref by, .. }) if by == "vm globex/db"
    );
    s.apply(Command::DeleteVm {
        id: b,
        expect_state: None,
    })?;
    s.apply(Command::DeleteImage(w.debian.clone()))?;
    ensure_eq!(s.image(&w.debian), None);
    ensure_eq!(s.images(), Vec::new());
    Ok(())
}

pub(super) fn delete_image_refuses_a_missing_image(s: &dyn Store) -> Result<(), Failure> {
    ensure_matches!(
        s.apply(Command::DeleteImage(name("fedora")?)),
        Err(StoreError::NotFound { kind: "image", ref key }) if key == "fedora"
    );
    Ok(())
}
