//! The `novacron` command: CLI and daemon entry point. It wires the library crates together and
//! holds no logic of its own.

fn main() {}
