//! Feature flags: each DWCP component (HDE, PBA, multi-stream, dedup store) can be switched off
//! per node, rolled out to a percentage of nodes, or all switched off at once by a kill switch,
//! so that a bad release falls back to the plain path without a redeploy.
//!
//! Main exports: [`Flags`] (the value: one [`FlagRule`] per [`Component`] and the kill switch),
//! [`FlagSet`] (a shared handle changed at run time), [`NodeFeatures`] (what one node uses).
//!
//! Rollout: a node is in a component's rollout when a stable hash of (flag name, node id),
//! BLAKE3 in derive-key mode, reduced to a bucket `0..100`, is below the rollout percentage.
//! Every node computes the same bucket for the same id on every start, raising the percentage
//! only adds nodes, and each flag has its own buckets so that the same 10 % of nodes do not get
//! every new feature first.
//!
//! A session takes one [`FlagSet::snapshot`] when it starts and keeps it to the end: a change
//! (or the kill switch) applies to the next session, never halfway through one.
//!
//! The document (JSON); every key is optional, an absent flag is fully on (`enabled`,
//! 100 %), and unknown keys are refused:
//!
//! ```json
//! {
//!   "kill_switch": false,
//!   "hde": { "enabled": true, "rollout_percent": 30 },
//!   "pba": { "enabled": true, "rollout_percent": 100 },
//!   "multistream": { "enabled": true },
//!   "dedup_store": { "enabled": false }
//! }
//! ```

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;
use serde_json::{Map, Value};

/// BLAKE3 derive-key context of the rollout hash. N.B. changing it reshuffles every rollout.
const ROLLOUT_CONTEXT: &str = "NovaCron DWCP 2025 feature flag rollout bucket";

/// A DWCP component that a flag switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// Hierarchical delta encoding (zero pages, references, deltas, compression).
    Hde,
    /// Predictive bandwidth allocation (compression level, stream count, link share).
    Pba,
    /// More than one TCP connection per session.
    Multistream,
    /// The receiver's persistent content store.
    DedupStore,
}

impl Component {
    /// Every component, in document order.
    pub const ALL: [Self; 4] = [Self::Hde, Self::Pba, Self::Multistream, Self::DedupStore];

    /// The flag name, as written in the document.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Hde => "hde",
            Self::Pba => "pba",
            Self::Multistream => "multistream",
            Self::DedupStore => "dedup_store",
        }
    }

    /// The component whose flag is called `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a flags document or value was refused. `field` is a dotted path such as
/// `hde.rollout_percent`.
#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    /// The document is not JSON.
    #[error("flags document is not valid JSON")]
    Syntax(#[source] serde_json::Error),
    /// The document is JSON but not an object.
    #[error("flags document must be a JSON object")]
    NotAnObject,
    /// A key that is neither `kill_switch` nor a known flag, or not a field of a flag.
    #[error("unknown field `{field}` in flags (expected one of: {expected})")]
    UnknownField {
        /// Path of the unknown key.
        field: String,
        /// The keys allowed there.
        expected: &'static str,
    },
    /// A value of the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// Path of the value.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A rollout percentage above 100.
    #[error("field `{field}` is {value}, above 100")]
    RolloutPercent {
        /// Path of the percentage.
        field: String,
        /// The value given.
        value: u64,
    },
}

/// The setting of one flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlagRule {
    enabled: bool,
    rollout_percent: u8,
}

impl FlagRule {
    /// Enabled on every node.
    pub const ON: Self = Self {
        enabled: true,
        rollout_percent: 100,
    };
    /// Disabled on every node.
    pub const OFF: Self = Self {
        enabled: false,
        rollout_percent: 0,
    };

    /// A rule; `rollout_percent` is the share of nodes (0–100) that use the component when
    /// `enabled`.
    ///
    /// # Errors
    /// [`FlagsError::RolloutPercent`] when `rollout_percent` is above 100.
    pub fn new(enabled: bool, rollout_percent: u8) -> Result<Self, FlagsError> {
        if rollout_percent > 100 {
            return Err(FlagsError::RolloutPercent {
                field: "rollout_percent".to_owned(),
                value: u64::from(rollout_percent),
            });
        }
        Ok(Self {
            enabled,
            rollout_percent,
        })
    }

    /// Whether the flag is on at all.
    #[must_use]
    pub fn enabled(self) -> bool {
        self.enabled
    }

    /// Share of nodes (0–100) in the rollout.
    #[must_use]
    pub fn rollout_percent(self) -> u8 {
        self.rollout_percent
    }
}

impl Default for FlagRule {
    fn default() -> Self {
        Self::ON
    }
}

/// A complete, valid set of flags: one rule per component and the kill switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Flags {
    kill_switch: bool,
    hde: FlagRule,
    pba: FlagRule,
    multistream: FlagRule,
    dedup_store: FlagRule,
}

/// What one node uses, resolved from [`Flags`] for its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeFeatures {
    /// HDE is on.
    pub hde: bool,
    /// PBA is on.
    pub pba: bool,
    /// More than one connection is allowed.
    pub multistream: bool,
    /// The content store is used.
    pub dedup_store: bool,
}

impl NodeFeatures {
    /// Whether `component` is on.
    #[must_use]
    pub fn get(self, component: Component) -> bool {
        match component {
            Component::Hde => self.hde,
            Component::Pba => self.pba,
            Component::Multistream => self.multistream,
            Component::DedupStore => self.dedup_store,
        }
    }
}

impl Flags {
    /// Everything off: every session uses the plain path.
    pub const ALL_OFF: Self = Self {
        kill_switch: false,
        hde: FlagRule::OFF,
        pba: FlagRule::OFF,
        multistream: FlagRule::OFF,
        dedup_store: FlagRule::OFF,
    };

    /// The rule of `component`.
    #[must_use]
    pub fn rule(&self, component: Component) -> FlagRule {
        match component {
            Component::Hde => self.hde,
            Component::Pba => self.pba,
            Component::Multistream => self.multistream,
            Component::DedupStore => self.dedup_store,
        }
    }

    /// These flags with `component` set to `rule`.
    #[must_use]
    pub fn with_rule(mut self, component: Component, rule: FlagRule) -> Self {
        *self.rule_mut(component) = rule;
        self
    }

    /// Whether the kill switch is on.
    #[must_use]
    pub fn kill_switch(&self) -> bool {
        self.kill_switch
    }

    /// These flags with the kill switch set to `on`.
    #[must_use]
    pub fn with_kill_switch(mut self, on: bool) -> Self {
        self.kill_switch = on;
        self
    }

    /// Whether the node `node_id` uses `component`: the kill switch is off, the flag is
    /// enabled, and the node's bucket for this flag is below the rollout percentage.
    #[must_use]
    pub fn is_enabled(&self, component: Component, node_id: &str) -> bool {
        let rule = self.rule(component);
        !self.kill_switch
            && rule.enabled
            && rollout_bucket(component, node_id) < u64::from(rule.rollout_percent)
    }

    /// Every component's decision for `node_id`.
    #[must_use]
    pub fn for_node(&self, node_id: &str) -> NodeFeatures {
        NodeFeatures {
            hde: self.is_enabled(Component::Hde, node_id),
            pba: self.is_enabled(Component::Pba, node_id),
            multistream: self.is_enabled(Component::Multistream, node_id),
            dedup_store: self.is_enabled(Component::DedupStore, node_id),
        }
    }

    /// Parses and validates a JSON document (see the module documentation).
    ///
    /// # Errors
    /// [`FlagsError::Syntax`] for invalid JSON; otherwise an error naming the field that is
    /// unknown, of the wrong type, or out of range.
    pub fn from_json(text: &str) -> Result<Self, FlagsError> {
        let doc: Value = serde_json::from_str(text).map_err(FlagsError::Syntax)?;
        let top = doc.as_object().ok_or(FlagsError::NotAnObject)?;
        let mut flags = Self::default();
        for (key, value) in top {
            if key == "kill_switch" {
                flags.kill_switch = as_bool(value, key)?;
            } else if let Some(component) = Component::from_name(key) {
                *flags.rule_mut(component) = parse_rule(value, key)?;
            } else {
                return Err(FlagsError::UnknownField {
                    field: key.clone(),
                    expected: "kill_switch, hde, pba, multistream, dedup_store",
                });
            }
        }
        Ok(flags)
    }

    /// The flags as a JSON document that [`Self::from_json`] reads back.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serializing plain structs of bools and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn rule_mut(&mut self, component: Component) -> &mut FlagRule {
        match component {
            Component::Hde => &mut self.hde,
            Component::Pba => &mut self.pba,
            Component::Multistream => &mut self.multistream,
            Component::DedupStore => &mut self.dedup_store,
        }
    }
}

/// The bucket `0..100` of `node_id` for `component`'s flag.
fn rollout_bucket(component: Component, node_id: &str) -> u64 {
    let mut hasher = blake3::Hasher::new_derive_key(ROLLOUT_CONTEXT);
    hasher.update(component.name().as_bytes());
    // The separator keeps ("ab", "c") and ("a", "bc") apart; flag names never contain NUL.
    hasher.update(&[0]);
    hasher.update(node_id.as_bytes());
    let mut word = [0_u8; 8];
    hasher.finalize_xof().fill(&mut word);
    // 2^64 mod 100 = 16: the modulo bias is ~1e-18, far below any rollout's resolution.
    u64::from_le_bytes(word) % 100
}

fn as_object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, FlagsError> {
    value.as_object().ok_or_else(|| FlagsError::WrongType {
        field: field.to_owned(),
        expected: "an object",
    })
}

fn as_bool(value: &Value, field: &str) -> Result<bool, FlagsError> {
    value.as_bool().ok_or_else(|| FlagsError::WrongType {
        field: field.to_owned(),
        expected: "true or false",
    })
}

fn parse_rule(value: &Value, flag: &str) -> Result<FlagRule, FlagsError> {
    let mut rule = FlagRule::ON;
    for (key, v) in as_object(value, flag)? {
        let field = format!("{flag}.{key}");
        match key.as_str() {
            "enabled" => rule.enabled = as_bool(v, &field)?,
            "rollout_percent" => {
                let n = v.as_u64().ok_or_else(|| FlagsError::WrongType {
                    field: field.clone(),
                    expected: "an integer from 0 to 100",
                })?;
                rule.rollout_percent = u8::try_from(n)
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or(FlagsError::RolloutPercent { field, value: n })?;
            }
            _ => {
                return Err(FlagsError::UnknownField {
                    field,
                    expected: "enabled, rollout_percent",
                });
            }
        }
    }
    Ok(rule)
}

/// A shared, run-time changeable [`Flags`] value; clones share it.
///
/// A `RwLock<Arc<Flags>>` rather than a `tokio::sync::watch`: readers take a snapshot once per
/// session and never wait for a change, so the notification a `watch` offers would go unused;
/// the lock is usable from sync and async code alike without a runtime, is held only for an
/// `Arc` clone or swap (never across an `.await`), and a writer replaces the value whole, so a
/// reader sees the old flags or the new ones, never a mix.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    current: Arc<RwLock<Arc<Flags>>>,
}

impl FlagSet {
    /// A handle holding `flags`.
    #[must_use]
    pub fn new(flags: Flags) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(flags))),
        }
    }

    /// The flags now; a session keeps this value until it ends.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Flags> {
        // A writer only swaps an `Arc`, so a poisoned lock still holds a whole value.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the flags for every session that starts from now on.
    pub fn update(&self, flags: Flags) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(flags);
    }

    /// Turns the kill switch on or off, keeping the rules: on, every new session uses the
    /// plain path; off, the rules apply again.
    pub fn set_kill_switch(&self, on: bool) {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        *guard = Arc::new(guard.with_kill_switch(on));
    }
}

#[cfg(test)]
#[path = "flags_test.rs"]
mod flags_test;
