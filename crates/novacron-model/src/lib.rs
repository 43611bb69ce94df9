//! NovaCron domain types and identifiers shared by every crate (no I/O).
