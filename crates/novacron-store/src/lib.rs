//! NovaCron state store: a typed state machine over redb (single node).
