//! `novacron node dwcp-flags`: show or change the node's DWCP feature flags (admin).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use novacron_api::dwcp_flags::{DwcpFlagRule, DwcpFlags, DwcpFlagsResponse};
use novacron_api::extract::parse_json;

use super::table::{key_values, table};
use super::{Ctx, print_json};

/// `novacron node dwcp-flags`.
#[derive(Debug, Args)]
pub struct DwcpFlagsArgs {
    /// Replace the flags with the JSON document in FILE (the format of `novacron server
    /// --dwcp-flags`; absent keys are on, unknown keys are refused).
    #[arg(long, value_name = "FILE", conflicts_with = "kill_switch")]
    set: Option<PathBuf>,
    /// Turn the kill switch on (every component off on the node, at once) or off (the rules
    /// apply again), keeping the rules.
    #[arg(long, value_name = "on|off")]
    kill_switch: Option<Switch>,
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// Shows the flags, or changes them as asked and shows the result.
pub(super) async fn run(ctx: &Ctx, args: DwcpFlagsArgs) -> anyhow::Result<()> {
    let answer = match (&args.set, args.kill_switch) {
        (Some(path), _) => {
            let flags = read_document(path)?;
            put(ctx, &flags).await?
        }
        (None, Some(switch)) => {
            // The rules as they are now, with the switch changed. N.B. a change made by
            // someone else between the two calls is overwritten.
            let now = ctx
                .client
                .dwcp_flags()
                .await
                .context("could not read the node's DWCP feature flags")?;
            let flags = DwcpFlags {
                kill_switch: switch == Switch::On,
                ..now.flags
            };
            put(ctx, &flags).await?
        }
        (None, None) => ctx
            .client
            .dwcp_flags()
            .await
            .context("could not read the node's DWCP feature flags")?,
    };
    if ctx.json {
        return print_json(&answer);
    }
    print!("{}", flags_text(&answer));
    Ok(())
}

async fn put(ctx: &Ctx, flags: &DwcpFlags) -> anyhow::Result<DwcpFlagsResponse> {
    ctx.client
        .put_dwcp_flags(flags)
        .await
        .context("could not change the node's DWCP feature flags")
}

/// The document in `path`, checked as the server checks it.
fn read_document(path: &std::path::Path) -> anyhow::Result<DwcpFlags> {
    let text = std::fs::read(path)
        .with_context(|| format!("could not read the flags file {}", path.display()))?;
    parse_json(&text).with_context(|| format!("invalid flags file {}", path.display()))
}

fn flags_text(r: &DwcpFlagsResponse) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let on_off = |b: bool| if b { "on" } else { "off" }.to_owned();
    let mut out = key_values(&[
        ("node", r.node.clone()),
        (
            "file",
            r.file
                .clone()
                .unwrap_or_else(|| "none (a change lasts until the daemon stops)".to_owned()),
        ),
        ("kill switch", on_off(r.flags.kill_switch)),
    ]);
    let f = &r.flags;
    let e = &r.effective;
    let row = |name: &str, rule: DwcpFlagRule, here: bool| {
        vec![
            name.to_owned(),
            yes_no(rule.enabled),
            format!("{}%", rule.rollout_percent),
            on_off(here),
        ]
    };
    out.push('\n');
    out.push_str(&table(
        &["COMPONENT", "ENABLED", "ROLLOUT", "THIS NODE"],
        &[
            row("hde", f.hde, e.hde),
            row("pba", f.pba, e.pba),
            row("multistream", f.multistream, e.multistream),
            row("dedup_store", f.dedup_store, e.dedup_store),
        ],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_api::dwcp_flags::DwcpFeatures;

    #[test]
    fn the_table_shows_rules_and_what_this_node_uses() {
        let mut r = DwcpFlagsResponse {
            node: "a".into(),
            flags: DwcpFlags {
                pba: DwcpFlagRule {
                    enabled: true,
                    rollout_percent: 30,
                },
                multistream: DwcpFlagRule {
                    enabled: false,
                    rollout_percent: 100,
                },
                ..DwcpFlags::default()
            },
            effective: DwcpFeatures {
                hde: true,
                pba: false,
                multistream: false,
                dedup_store: true,
            },
            file: Some("/etc/novacron/flags.json".into()),
        };
        let text = flags_text(&r);
        assert!(text.starts_with("node:         a\n"), "{text}");
        assert!(
            text.contains("file:         /etc/novacron/flags.json\n"),
            "{text}"
        );
        assert!(text.contains("kill switch:  off\n"), "{text}");
        assert!(
            text.contains("COMPONENT    ENABLED  ROLLOUT  THIS NODE\n"),
            "{text}"
        );
        assert!(
            text.contains("\npba          yes      30%      off\n"),
            "{text}"
        );
        assert!(
            text.contains("\nmultistream  no       100%     off\n"),
            "{text}"
        );
        assert!(
            text.ends_with("dedup_store  yes      100%     on\n"),
            "{text}"
        );
        r.file = None;
        assert!(flags_text(&r).contains("file:         none"));
    }

    #[test]
    fn a_flags_file_is_checked_before_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        std::fs::write(&path, r#"{"hde":{"enabled":false}}"#).unwrap();
        assert!(!read_document(&path).unwrap().hde.enabled);
        std::fs::write(&path, r#"{"hde":{"enabled":false},"turbo":1}"#).unwrap();
        let e = format!("{:#}", read_document(&path).unwrap_err());
        assert!(e.contains("invalid flags file"), "{e}");
        assert!(e.contains("unknown field `turbo`"), "{e}");
    }
}
