//! Tenants, tokens and authentication.

use crate::node::{Node, NodeError};
use novacron_api::types::{
    TenantPutRequest, TenantResponse, TokenCreateRequest, TokenCreateResponse,
};
use novacron_api::{Caller, ServiceError};
use novacron_model::{Name, Quota, Role, Tenant, Timestamp, TokenId, TokenRecord};
use novacron_store::Command;
use rand::RngCore;

/// Tenant of the first admin token.
pub const ADMIN_TENANT: &str = "admin";

/// Prefix of every token secret, so a leaked one is easy to recognise.
const TOKEN_PREFIX: &str = "nct_";

/// A new random token secret (256 bits).
#[must_use]
pub fn new_token_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::with_capacity(TOKEN_PREFIX.len() + 64);
    s.push_str(TOKEN_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The stored form of a secret: hex BLAKE3. Secrets are 256 random bits, so a fast hash is
/// enough: there is nothing to guess.
#[must_use]
pub fn token_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

impl Node {
    /// Resolves a bearer token.
    pub(crate) fn authenticate_token(&self, secret: &str) -> Option<Caller> {
        // The hex form on the stack: no allocation on every request's token check.
        let hash = blake3::hash(secret.as_bytes()).to_hex();
        let rec = self.store().token_by_hash(hash.as_str())?;
        Some(Caller {
            token: rec.id,
            tenant: rec.tenant,
            role: rec.role,
        })
    }

    /// Creates the admin tenant and token on first start; returns the secret when it made one.
    pub(crate) async fn bootstrap_admin(&self) -> Result<Option<String>, NodeError> {
        let tenant = Name::new(ADMIN_TENANT).map_err(|e| NodeError::Bootstrap(e.to_string()))?;
        if !self.store().tokens(&tenant).is_empty() {
            return Ok(None);
        }
        if self.store().tenant(&tenant).is_none() {
            self.apply(Command::PutTenant(Tenant {
                name: tenant.clone(),
                quota: Quota::default(),
                created_at: Timestamp::now(),
            }))
            .await
            .map_err(|e| NodeError::Bootstrap(e.to_string()))?;
        }
        let (secret, _) = self
            .issue_token(tenant, Role::Admin, "first admin token".to_owned())
            .await
            .map_err(|e| NodeError::Bootstrap(e.to_string()))?;
        Ok(Some(secret))
    }

    async fn issue_token(
        &self,
        tenant: Name,
        role: Role,
        label: String,
    ) -> Result<(String, TokenRecord), ServiceError> {
        let secret = new_token_secret();
        let record = TokenRecord {
            id: TokenId::random(),
            tenant,
            role,
            secret_hash: token_hash(&secret),
            label,
            created_at: Timestamp::now(),
        };
        self.apply(Command::PutToken(record.clone())).await?;
        Ok((secret, record))
    }

    pub(crate) fn tenant_list(&self) -> Vec<TenantResponse> {
        self.store()
            .tenants()
            .into_iter()
            .map(|t| TenantResponse {
                usage: self.store().usage(&t.name),
                name: t.name,
                quota: t.quota,
            })
            .collect()
    }

    pub(crate) async fn tenant_put(
        &self,
        req: TenantPutRequest,
    ) -> Result<TenantResponse, ServiceError> {
        let existing = self.store().tenant(&req.name);
        let tenant = Tenant {
            name: req.name.clone(),
            quota: req
                .quota
                .or(existing.as_ref().map(|t| t.quota))
                .unwrap_or_default(),
            created_at: existing.map_or_else(Timestamp::now, |t| t.created_at),
        };
        self.apply(Command::PutTenant(tenant.clone())).await?;
        Ok(TenantResponse {
            usage: self.store().usage(&tenant.name),
            name: tenant.name,
            quota: tenant.quota,
        })
    }

    pub(crate) async fn token_create(
        &self,
        req: TokenCreateRequest,
    ) -> Result<TokenCreateResponse, ServiceError> {
        if self.store().tenant(&req.tenant).is_none() {
            return Err(ServiceError::NotFound {
                kind: "tenant",
                key: req.tenant.to_string(),
            });
        }
        let (token, record) = self.issue_token(req.tenant, req.role, req.label).await?;
        Ok(TokenCreateResponse { token, record })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secrets_are_random_and_hashes_stable() {
        let a = new_token_secret();
        let b = new_token_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("nct_") && a.len() == 68, "{a}");
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
