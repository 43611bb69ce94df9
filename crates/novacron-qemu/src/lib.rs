//! NovaCron QEMU driver: process supervision, QMP client, qemu-img, KVM probe.
