//! DWCP feature flags in the API: `GET` and `PUT /api/v1/node/dwcp-flags` (admin).
//!
//! [`DwcpFlags`] is the document `novacron server --dwcp-flags FILE` reads (`dwcp::flags`):
//! every key is optional, an absent flag is fully on (enabled, 100 %), and unknown keys are
//! refused, here as a `400 invalid_json` naming them.
//!
//! ```json
//! { "kill_switch": false, "hde": { "enabled": true, "rollout_percent": 30 },
//!   "multistream": { "enabled": false } }
//! ```

use serde::de::{Deserializer, Error as _, Unexpected};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The setting of one component's flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DwcpFlagRule {
    /// Whether the component is on at all (default `true`).
    pub enabled: bool,
    /// Share of nodes, 0 to 100, that use the component when it is enabled, chosen by a
    /// stable hash of the node's name (default 100).
    #[serde(deserialize_with = "percent")]
    #[schema(maximum = 100)]
    pub rollout_percent: u8,
}

impl Default for DwcpFlagRule {
    fn default() -> Self {
        Self {
            enabled: true,
            rollout_percent: 100,
        }
    }
}

/// A rollout percentage: an integer from 0 to 100.
fn percent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let n = u64::deserialize(deserializer)?;
    u8::try_from(n).ok().filter(|p| *p <= 100).ok_or_else(|| {
        D::Error::invalid_value(Unexpected::Unsigned(n), &"an integer from 0 to 100")
    })
}

/// The DWCP feature flags of a node: one rule per component and the kill switch. The body of
/// `PUT /api/v1/node/dwcp-flags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DwcpFlags {
    /// Every component off on this node, whatever the rules say (default `false`).
    pub kill_switch: bool,
    /// Hierarchical delta encoding: zero elision and compression of migration streams.
    pub hde: DwcpFlagRule,
    /// Predictive bandwidth allocation: the codec chosen from the link (off: a fixed lz4).
    pub pba: DwcpFlagRule,
    /// More than one TCP connection per stream (off: one).
    pub multistream: DwcpFlagRule,
    /// The receiver's persistent content store.
    pub dedup_store: DwcpFlagRule,
}

/// Which DWCP components this node uses: the kill switch is off, the component's flag is
/// enabled and the node is in its rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DwcpFeatures {
    /// Hierarchical delta encoding.
    pub hde: bool,
    /// Predictive bandwidth allocation.
    pub pba: bool,
    /// More than one connection per stream.
    pub multistream: bool,
    /// The content store.
    pub dedup_store: bool,
}

/// `GET` and `PUT /api/v1/node/dwcp-flags`: the flags in force and what they turn on here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DwcpFlagsResponse {
    /// This node's name, which the rollouts hash.
    pub node: String,
    /// The flags every migration stream leaving the node from now on starts with.
    pub flags: DwcpFlags,
    /// What they turn on for this node.
    pub effective: DwcpFeatures,
    /// The file the node reads the flags from (at start and on SIGHUP) and writes a change
    /// to; `None` when the daemon was started without one, and a change lasts until it
    /// stops.
    pub file: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiError;
    use crate::extract::parse_json;

    fn refused(body: &str) -> (Option<String>, String) {
        match parse_json::<DwcpFlags>(body.as_bytes()).unwrap_err() {
            ApiError::BadJson { field, message } => (field, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absent_keys_are_fully_on() {
        let flags: DwcpFlags = parse_json(b"{}").unwrap();
        assert_eq!(flags, DwcpFlags::default());
        assert!(!flags.kill_switch);
        assert_eq!(
            flags.hde,
            DwcpFlagRule {
                enabled: true,
                rollout_percent: 100
            }
        );
        let flags: DwcpFlags =
            parse_json(br#"{"pba":{"enabled":false},"hde":{"rollout_percent":5}}"#).unwrap();
        assert_eq!((flags.pba.enabled, flags.pba.rollout_percent), (false, 100));
        assert_eq!((flags.hde.enabled, flags.hde.rollout_percent), (true, 5));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let (field, message) = refused(r#"{"compression":true}"#);
        assert_eq!(field.as_deref(), Some("compression"), "{message}");
        assert!(message.contains("unknown field `compression`"), "{message}");
        assert!(message.contains("kill_switch"), "{message}");
        let (field, message) = refused(r#"{"hde":{"enabld":false}}"#);
        assert_eq!(field.as_deref(), Some("hde.enabld"), "{message}");
        assert!(message.contains("unknown field `enabld`"), "{message}");
    }

    #[test]
    fn rollout_percentages_above_100_and_wrong_types_name_the_field() {
        for body in [
            r#"{"hde":{"rollout_percent":101}}"#,
            r#"{"hde":{"rollout_percent":300}}"#,
        ] {
            let (field, message) = refused(body);
            assert_eq!(field.as_deref(), Some("hde.rollout_percent"), "{message}");
            assert!(message.contains("from 0 to 100"), "{message}");
        }
        let (field, _) = refused(r#"{"kill_switch":"yes"}"#);
        assert_eq!(field.as_deref(), Some("kill_switch"));
        let (field, _) = refused(r#"{"multistream":false}"#);
        assert_eq!(field.as_deref(), Some("multistream"));
    }

    #[test]
    fn a_document_reads_back_as_written() {
        let flags = DwcpFlags {
            kill_switch: true,
            pba: DwcpFlagRule {
                enabled: false,
                rollout_percent: 0,
            },
            ..DwcpFlags::default()
        };
        let text = serde_json::to_string(&flags).unwrap();
        assert_eq!(parse_json::<DwcpFlags>(text.as_bytes()).unwrap(), flags);
    }
}
