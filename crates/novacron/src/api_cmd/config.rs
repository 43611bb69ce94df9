//! Where the API commands find the server and their token: flags, environment, config file,
//! default, in that order.
//!
//! ```text
//!  addr:   --addr          > NOVACRON_ADDR  > config `addr`  > http://127.0.0.1:8640
//!  token:  --token | --token-file > NOVACRON_TOKEN > NOVACRON_TOKEN_FILE
//!                                 > config `token` > config `token_file`
//!  config: --config > NOVACRON_CONFIG > $XDG_CONFIG_HOME/novacron/config.toml
//!                                     > ~/.config/novacron/config.toml (optional)
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use super::exit::CliError;

/// Server address when no flag, variable or config file gives one.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8640";

/// The config file: every key optional, unknown keys refused.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Server base URL.
    pub addr: Option<String>,
    /// The token itself.
    pub token: Option<String>,
    /// A file holding the token; relative to the config file's directory.
    pub token_file: Option<PathBuf>,
}

/// What the command line said (flags only; the environment is read in [`resolve`]).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--addr`.
    pub addr: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
}

/// Where to connect and with what.
#[derive(Debug, PartialEq, Eq)]
pub struct Settings {
    /// Server base URL.
    pub addr: String,
    /// The bearer token.
    pub token: String,
}

/// Reads the settings from `flags`, the environment through `env`, and the config file.
///
/// # Errors
/// A config file named by flag or variable that cannot be read, any config file that is not
/// valid (unknown keys included), an unreadable or empty token file, or no token at all
/// ([`CliError::NoToken`]).
pub fn resolve(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let (config_path, explicit) = match flags
        .config
        .clone()
        .or_else(|| var("NOVACRON_CONFIG").map(PathBuf::from))
    {
        Some(p) => (Some(p), true),
        None => (default_config_path(&var), false),
    };
    let config = match &config_path {
        Some(p) => load(p, explicit)?,
        None => None,
    };
    let config_dir = config_path
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    let file = config.unwrap_or_default();
    let addr = flags
        .addr
        .clone()
        .or_else(|| var("NOVACRON_ADDR"))
        .or(file.addr)
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());

    enum Source {
        Value(String),
        File(PathBuf),
    }
    let source = if let Some(t) = &flags.token {
        Some(Source::Value(t.clone()))
    } else if let Some(f) = &flags.token_file {
        Some(Source::File(f.clone()))
    } else if let Some(t) = var("NOVACRON_TOKEN") {
        Some(Source::Value(t))
    } else if let Some(f) = var("NOVACRON_TOKEN_FILE") {
        Some(Source::File(PathBuf::from(f)))
    } else if let Some(t) = file.token {
        Some(Source::Value(t))
    } else {
        file.token_file.map(|f| match &config_dir {
            Some(dir) if f.is_relative() => Source::File(dir.join(f)),
            _ => Source::File(f),
        })
    };
    let token = match source {
        Some(Source::Value(t)) => t.trim().to_owned(),
        Some(Source::File(path)) => read_token(&path)?,
        None => {
            let where_ = config_path
                .as_deref()
                .map_or_else(|| "the config file".to_owned(), |p| p.display().to_string());
            return Err(CliError::NoToken(format!(
                "no API token: pass --token or --token-file, set NOVACRON_TOKEN or \
                 NOVACRON_TOKEN_FILE, or set `token` or `token_file` in {where_}"
            ))
            .into());
        }
    };
    if token.is_empty() {
        bail!("the API token is empty");
    }
    Ok(Settings { addr, token })
}

/// `$XDG_CONFIG_HOME/novacron/config.toml`, else `$HOME/.config/novacron/config.toml`.
fn default_config_path(var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("novacron").join("config.toml"))
}

/// Reads and checks a config file; a missing one is fine unless it was named.
fn load(path: &Path, explicit: bool) -> anyhow::Result<Option<ConfigFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("could not read config {}", path.display()));
        }
    };
    parse_config(&text)
        .with_context(|| format!("invalid config {}", path.display()))
        .map(Some)
}

/// Parses a config file's text.
///
/// # Errors
/// Invalid TOML, a value of the wrong type, or a key other than `addr`, `token`,
/// `token_file`.
pub fn parse_config(text: &str) -> anyhow::Result<ConfigFile> {
    toml::from_str(text).map_err(|e| {
        // toml's message spans lines with a source excerpt; keep its first line.
        let msg = e.message().lines().next().unwrap_or_default();
        let line = e
            .span()
            .and_then(|s| text.get(..s.start))
            .map_or(1, |before| before.matches('\n').count() + 1);
        if msg.contains("expected one of") {
            anyhow::anyhow!("line {line}: {msg}")
        } else {
            anyhow::anyhow!("line {line}: {msg} (known keys: addr, token, token_file)")
        }
    })
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn flags_beat_environment_beat_config_beat_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "c.toml",
            "addr = \"http://cfg:1\"\ntoken = \"cfg\"\n",
        );
        let c = cfg.to_str().unwrap();
        let flags = Flags {
            addr: Some("http://flag:1".into()),
            token: Some("flag".into()),
            ..Flags::default()
        };
        let env = env_of(&[
            ("NOVACRON_CONFIG", c),
            ("NOVACRON_ADDR", "http://env:1"),
            ("NOVACRON_TOKEN", "env"),
        ]);
        let s = resolve(&flags, &env).unwrap();
        assert_eq!(
            (s.addr.as_str(), s.token.as_str()),
            ("http://flag:1", "flag")
        );
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!((s.addr.as_str(), s.token.as_str()), ("http://env:1", "env"));
        let s = resolve(&Flags::default(), &env_of(&[("NOVACRON_CONFIG", c)])).unwrap();
        assert_eq!((s.addr.as_str(), s.token.as_str()), ("http://cfg:1", "cfg"));
        let s = resolve(
            &Flags::default(),
            &env_of(&[("NOVACRON_TOKEN", "t"), ("HOME", "/nonexistent")]),
        )
        .unwrap();
        assert_eq!(s.addr, DEFAULT_ADDR);
    }

    #[test]
    fn token_files_are_read_trimmed_and_follow_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "tok", "  from-file\n");
        let flags = Flags {
            token_file: Some(f.clone()),
            ..Flags::default()
        };
        let env = env_of(&[("NOVACRON_TOKEN", "env"), ("HOME", "/nonexistent")]);
        assert_eq!(resolve(&flags, &env).unwrap().token, "from-file");
        // The environment's token beats its token file.
        let env = env_of(&[
            ("NOVACRON_TOKEN", "env"),
            ("NOVACRON_TOKEN_FILE", f.to_str().unwrap()),
            ("HOME", "/nonexistent"),
        ]);
        assert_eq!(resolve(&Flags::default(), &env).unwrap().token, "env");
        // A config's token_file is relative to the config's directory.
        let env = env_of(&[("XDG_CONFIG_HOME", dir.path().to_str().unwrap())]);
        std::fs::create_dir(dir.path().join("novacron")).unwrap();
        write(
            &dir.path().join("novacron"),
            "config.toml",
            "token_file = \"t2\"\n",
        );
        write(&dir.path().join("novacron"), "t2", "xdg\n");
        assert_eq!(resolve(&Flags::default(), &env).unwrap().token, "xdg");
        let empty = write(dir.path(), "empty", "\n");
        let flags = Flags {
            token_file: Some(empty),
            ..Flags::default()
        };
        let e = resolve(&flags, &env).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }

    #[test]
    fn a_missing_token_names_the_three_ways_to_give_one() {
        let env = env_of(&[("HOME", "/nonexistent")]);
        let e = resolve(&Flags::default(), &env).unwrap_err();
        let msg = e.to_string();
        for want in [
            "--token",
            "NOVACRON_TOKEN",
            "token_file",
            "/nonexistent/.config",
        ] {
            assert!(msg.contains(want), "{want}: {msg}");
        }
        assert!(e.downcast_ref::<CliError>().is_some());
    }

    #[test]
    fn unknown_keys_are_refused_clearly() {
        let e = parse_config("addr = \"x\"\ntokn = \"y\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 2: unknown field `tokn`"), "{msg}");
        assert!(msg.contains("`addr`, `token`, `token_file`"), "{msg}");
        let e = parse_config("addr = 5").unwrap_err();
        assert!(e.to_string().contains("known keys"), "{e}");
        assert_eq!(parse_config("").unwrap(), ConfigFile::default());
    }

    #[test]
    fn a_named_config_must_exist_but_the_default_one_need_not() {
        let flags = Flags {
            config: Some("/nonexistent/c.toml".into()),
            token: Some("t".into()),
            ..Flags::default()
        };
        let e = resolve(&flags, &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("could not read config"), "{e}");
        let env = env_of(&[("XDG_CONFIG_HOME", "/nonexistent"), ("NOVACRON_TOKEN", "t")]);
        assert!(resolve(&Flags::default(), &env).is_ok());
    }

    #[test]
    fn the_default_config_path_prefers_xdg() {
        let var = env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            default_config_path(&var),
            Some(PathBuf::from("/x/novacron/config.toml"))
        );
        let var = env_of(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")]);
        assert_eq!(
            default_config_path(&var),
            Some(PathBuf::from("/h/.config/novacron/config.toml"))
        );
        assert_eq!(default_config_path(&env_of(&[])), None);
    }
}
