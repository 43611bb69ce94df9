//! NovaCron test guest program.
fn main() {}
