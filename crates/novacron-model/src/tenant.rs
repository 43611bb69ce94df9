//! Tenants, their quotas, and the API tokens bound to them.

use crate::{ByteSize, Name, Timestamp, TokenId};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// Limits on what one tenant may hold on a node. Stopped VMs count too: their resources are
/// promised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Most VMs.
    pub max_vms: u32,
    /// Most vCPUs over all VMs.
    pub max_vcpus: u32,
    /// Most guest memory over all VMs.
    pub max_memory: ByteSize,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            max_vms: 100,
            max_vcpus: 256,
            max_memory: ByteSize::mib(256 << 10),
        }
    }
}

/// What a tenant holds now, counted like its [`Quota`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// VMs.
    pub vms: u32,
    /// vCPUs over all VMs.
    pub vcpus: u32,
    /// Guest memory over all VMs.
    pub memory: ByteSize,
}

/// A tenant: the unit of isolation. Its tokens see and touch only its VMs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Name, unique on the node.
    pub name: Name,
    /// Limits.
    pub quota: Quota,
    /// When it was created.
    pub created_at: Timestamp,
}

/// What a token may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read only.
    Viewer,
    /// Viewer, plus create, act on and delete the tenant's VMs.
    Operator,
    /// Operator, plus import images, manage tenants, quotas and tokens.
    Admin,
}

impl Role {
    /// The lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Whether this role includes everything `needed` may do.
    #[must_use]
    pub fn allows(self, needed: Self) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API token as stored: never the secret, only its BLAKE3 hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenRecord {
    /// Identifier (safe to show and log).
    pub id: TokenId,
    /// Tenant the token acts for.
    pub tenant: Name,
    /// What it may do.
    pub role: Role,
    /// Hex BLAKE3 hash of the secret token string.
    pub secret_hash: String,
    /// Free-form label.
    pub label: String,
    /// When it was issued.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_lower_ones() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
    }
}
