//! NovaCron QEMU driver: process supervision, QMP client, qemu-img, KVM probe.

pub mod kvm;
pub mod qmp;
