//! NovaCron node service: VM lifecycle over the store and the QEMU driver.
