//! `novacron tenant` and `novacron token`: tenants, their quotas, and API tokens (admin).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use novacron_api::types::{TenantPutRequest, TenantResponse, TokenCreateRequest};
use novacron_model::{ByteSize, Name, Quota, Role};

use super::exit::EXIT_STATUS_HELP;
use super::table::{key_values, table};
use super::{ApiArgs, Ctx, print_json};

/// `novacron tenant`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct TenantArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) cmd: TenantCommand,
}

/// The `tenant` commands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants with their quota and use.
    List,
    /// Create a tenant, or change its quota (limits not given stay as they are).
    Put(PutArgs),
}

/// `tenant put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Tenant name: a-z, 0-9 and '-', up to 63 characters.
    pub name: Name,
    /// Most VMs.
    #[arg(long, value_name = "N")]
    pub max_vms: Option<u32>,
    /// Most vCPUs over all VMs.
    #[arg(long, value_name = "N")]
    pub max_vcpus: Option<u32>,
    /// Most guest memory over all VMs (64G, 1T).
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<ByteSize>,
}

/// `novacron token`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct TokenArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) cmd: TokenCommand,
}

/// The `token` commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; its secret is printed this once.
    Create(TokenCreateArgs),
}

/// `token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// Tenant the token acts for (must exist).
    #[arg(long)]
    pub tenant: Name,
    /// What the token may do.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Free-form label (at most 200 characters).
    #[arg(long, default_value = "")]
    pub label: String,
}

/// A role as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Everything, including images, tenants and tokens.
    Admin,
    /// Create, act on and delete the tenant's VMs.
    Operator,
    /// Read only.
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Self::Admin,
            RoleArg::Operator => Self::Operator,
            RoleArg::Viewer => Self::Viewer,
        }
    }
}

/// Runs a `tenant` command.
///
/// # Errors
/// Bad settings, or the command's failure (see the exit statuses).
pub fn run_tenant(args: TenantArgs) -> anyhow::Result<ExitCode> {
    let TenantArgs { api, cmd } = args;
    super::run(&api, |ctx| async move {
        match cmd {
            TenantCommand::List => {
                let tenants = list(&ctx).await?;
                if ctx.json {
                    return print_json(&tenants);
                }
                print!("{}", list_text(&tenants));
                Ok(())
            }
            TenantCommand::Put(a) => put(&ctx, &a).await,
        }
    })
}

/// Runs a `token` command.
///
/// # Errors
/// Bad settings, or the command's failure (see the exit statuses).
pub fn run_token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let TokenArgs { api, cmd } = args;
    super::run(&api, |ctx| async move {
        let TokenCommand::Create(a) = cmd;
        let req = TokenCreateRequest {
            tenant: a.tenant.clone(),
            role: a.role.into(),
            label: a.label.clone(),
        };
        let issued = ctx
            .client
            .create_token(&req)
            .await
            .with_context(|| format!("could not issue a token for tenant {}", a.tenant))?;
        if ctx.json {
            return print_json(&issued);
        }
        println!("{}", issued.token);
        eprintln!(
            "token {} for tenant {} as {}: the secret above is shown only this once",
            issued.record.id, issued.record.tenant, issued.record.role
        );
        Ok(())
    })
}

async fn list(ctx: &Ctx) -> anyhow::Result<Vec<TenantResponse>> {
    ctx.client
        .list_tenants()
        .await
        .context("could not list tenants")
}

async fn put(ctx: &Ctx, args: &PutArgs) -> anyhow::Result<()> {
    let current = list(ctx)
        .await?
        .into_iter()
        .find(|t| t.name == args.name)
        .map(|t| t.quota);
    let req = TenantPutRequest {
        name: args.name.clone(),
        quota: merged_quota(args, current),
    };
    let tenant = ctx
        .client
        .put_tenant(&req)
        .await
        .with_context(|| format!("could not put tenant {}", args.name))?;
    if ctx.json {
        return print_json(&tenant);
    }
    print!(
        "{}",
        key_values(&[
            ("name", tenant.name.to_string()),
            ("max_vms", tenant.quota.max_vms.to_string()),
            ("max_vcpus", tenant.quota.max_vcpus.to_string()),
            ("max_memory", tenant.quota.max_memory.to_string()),
        ])
    );
    Ok(())
}

/// The quota to send: the limits given over the tenant's `current` quota (the defaults for a
/// new tenant); `current` as it is when no limit is given, so nothing changes.
fn merged_quota(args: &PutArgs, current: Option<Quota>) -> Option<Quota> {
    if args.max_vms.is_none() && args.max_vcpus.is_none() && args.max_memory.is_none() {
        return current;
    }
    let base = current.unwrap_or_default();
    Some(Quota {
        max_vms: args.max_vms.unwrap_or(base.max_vms),
        max_vcpus: args.max_vcpus.unwrap_or(base.max_vcpus),
        max_memory: args.max_memory.unwrap_or(base.max_memory),
    })
}

fn list_text(tenants: &[TenantResponse]) -> String {
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            vec![
                t.name.to_string(),
                format!("{}/{}", t.usage.vms, t.quota.max_vms),
                format!("{}/{}", t.usage.vcpus, t.quota.max_vcpus),
                format!("{}/{}", t.usage.memory, t.quota.max_memory),
            ]
        })
        .collect();
    table(&["NAME", "VMS", "VCPUS", "MEMORY"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_cmd::tests::{TestCommand, parse};
    use novacron_model::Usage;

    fn put_args(args: &[&str]) -> PutArgs {
        let mut all = vec!["tenant", "put"];
        all.extend_from_slice(args);
        match parse(&all) {
            Ok(TestCommand::Tenant(TenantArgs {
                cmd: TenantCommand::Put(a),
                ..
            })) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn limits_given_override_the_current_quota() {
        let a = put_args(&["blue", "--max-vms", "3", "--max-memory", "64G"]);
        let current = Quota {
            max_vms: 10,
            max_vcpus: 20,
            max_memory: ByteSize(1 << 30),
        };
        assert_eq!(
            merged_quota(&a, Some(current)),
            Some(Quota {
                max_vms: 3,
                max_vcpus: 20,
                max_memory: ByteSize(64 << 30),
            })
        );
        let fresh = merged_quota(&a, None).unwrap();
        assert_eq!(fresh.max_vcpus, Quota::default().max_vcpus);
    }

    #[test]
    fn no_limits_keep_the_quota_as_it_is() {
        let a = put_args(&["blue"]);
        assert_eq!(merged_quota(&a, None), None);
        let q = Quota::default();
        assert_eq!(merged_quota(&a, Some(q)), Some(q));
    }

    #[test]
    fn token_roles_parse_from_their_names() {
        let Ok(TestCommand::Token(t)) = parse(&[
            "token", "create", "--tenant", "blue", "--role", "operator", "--label", "ci",
        ]) else {
            panic!()
        };
        let TokenCommand::Create(c) = t.cmd;
        assert_eq!(Role::from(c.role), Role::Operator);
        assert_eq!(c.label, "ci");
    }

    #[test]
    fn the_tenant_list_shows_use_over_limits() {
        let t = TenantResponse {
            name: Name::new("blue").unwrap(),
            quota: Quota {
                max_vms: 4,
                max_vcpus: 8,
                max_memory: ByteSize(8 << 30),
            },
            usage: Usage {
                vms: 1,
                vcpus: 2,
                memory: ByteSize(512 << 20),
            },
        };
        assert_eq!(
            list_text(&[t]),
            "NAME  VMS  VCPUS  MEMORY\nblue  1/4  2/8    512M/8G\n"
        );
    }
}
