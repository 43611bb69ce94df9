//! `vm console`: the last lines of a VM's serial console, once or followed.
//!
//! Following polls the same window of last lines every second and prints what lies past the
//! longest overlap with the lines already shown. The server does not say whether the last line
//! is finished, so the last new line is held back for one poll: it is printed once a line
//! follows it or once it has stayed the same, and a held line that grew is printed whole.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::Ctx;
use super::exit::CliError;

/// Lines fetched per poll while following (unless `--lines` asks for more).
const FOLLOW_WINDOW: usize = 1000;
/// Most lines the server returns in one answer.
const MAX_LINES: usize = 10_000;

/// `vm console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// VM name or id.
    pub vm: String,
    /// Number of last lines to show (server default 100, at most 10000).
    #[arg(long, value_name = "N")]
    pub lines: Option<usize>,
    /// Keep polling every second and print new lines until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
}

/// Runs `vm console`.
///
/// # Errors
/// `--follow` with `--json`, or a client error.
pub async fn run(ctx: &Ctx, args: &ConsoleArgs) -> anyhow::Result<()> {
    let what = || format!("could not read the console of {}", args.vm);
    if !args.follow {
        let text = ctx
            .client
            .console(&args.vm, args.lines)
            .await
            .with_context(what)?;
        if ctx.json {
            super::print_json(&text)?;
        } else if text.is_empty() || text.ends_with('\n') {
            print!("{text}");
        } else {
            // The API leaves off the newline that ends the last line.
            println!("{text}");
        }
        return Ok(());
    }
    if ctx.json {
        return Err(CliError::Usage("--follow prints text; leave out --json".to_owned()).into());
    }
    let show = args.lines.unwrap_or(100);
    let window = show.clamp(FOLLOW_WINDOW, MAX_LINES);
    let text = ctx
        .client
        .console(&args.vm, Some(window))
        .await
        .with_context(what)?;
    let first = lines_of(&text);
    for line in first.iter().skip(first.len().saturating_sub(show)) {
        println!("{line}");
    }
    let mut follower = Follower::new(first);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let text = ctx
            .client
            .console(&args.vm, Some(window))
            .await
            .with_context(what)?;
        for line in follower.step(lines_of(&text)) {
            println!("{line}");
        }
    }
}

/// The lines of a console answer (which carries no final newline).
fn lines_of(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

/// What `--follow` has shown, and the line it holds back.
#[derive(Debug)]
struct Follower {
    /// The lines shown, as the start of the last window read.
    shown: Vec<String>,
    /// The last line of the last window when it was not shown yet.
    pending: Option<String>,
}

impl Follower {
    fn new(shown: Vec<String>) -> Self {
        Self {
            shown,
            pending: None,
        }
    }

    /// Takes the next window of last lines and returns the lines to print.
    fn step(&mut self, next: Vec<String>) -> Vec<String> {
        let from = first_new(&self.shown, &next);
        let mut fresh: Vec<String> = next.get(from..).unwrap_or_default().to_vec();
        let hold = match (fresh.last(), &self.pending) {
            // Unchanged since the last poll: it is as finished as it will get for now.
            (Some(last), Some(p)) if last == p => false,
            (Some(_), _) => true,
            (None, _) => false,
        };
        self.pending = if hold { fresh.pop() } else { None };
        let kept = next.len() - usize::from(hold);
        self.shown = next;
        self.shown.truncate(kept);
        fresh
    }
}

/// Index in `next` of its first line not shown yet: past the longest tail of `shown` that
/// begins `next`. The last line of that tail may have grown since (a line still being
/// written): it then counts as new, to be shown whole. Zero when nothing overlaps.
fn first_new(shown: &[String], next: &[String]) -> usize {
    for start in 0..shown.len() {
        let Some(tail) = shown.get(start..) else {
            break;
        };
        let Some((last, body)) = tail.split_last() else {
            break;
        };
        let Some(candidate) = next.get(body.len()) else {
            continue;
        };
        if next.starts_with(body) && candidate.starts_with(last.as_str()) {
            return if candidate == last {
                tail.len()
            } else {
                body.len()
            };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn answers_split_into_lines() {
        assert_eq!(lines_of("a\nb\r\nc"), lines(&["a", "b", "c"]));
        assert_eq!(lines_of("a\n\nb\n"), lines(&["a", "", "b"]));
        assert_eq!(lines_of(""), lines(&[]));
    }

    #[test]
    fn a_growing_console_shows_only_new_lines() {
        let shown = lines(&["a", "b"]);
        assert_eq!(first_new(&shown, &lines(&["a", "b", "c"])), 2);
        assert_eq!(first_new(&shown, &shown), 2);
        assert_eq!(first_new(&[], &lines(&["a"])), 0);
    }

    #[test]
    fn a_sliding_window_shows_only_new_lines() {
        let shown = lines(&["a", "b", "c"]);
        assert_eq!(first_new(&shown, &lines(&["b", "c", "d"])), 2);
        assert_eq!(first_new(&shown, &lines(&["c", "d", "e"])), 1);
        assert_eq!(first_new(&shown, &lines(&["x", "y"])), 0);
    }

    #[test]
    fn a_line_that_grew_counts_as_new() {
        let shown = lines(&["a", "log"]);
        assert_eq!(first_new(&shown, &lines(&["a", "login: ", "x"])), 1);
    }

    #[test]
    fn repeated_lines_count_as_seen_as_long_as_they_match() {
        let shown = lines(&["x", "x", "x"]);
        assert_eq!(first_new(&shown, &lines(&["x", "x", "x", "y"])), 3);
        assert_eq!(first_new(&shown, &lines(&["x", "x", "y"])), 2);
    }

    #[test]
    fn the_last_line_waits_one_poll_unless_another_follows() {
        let mut f = Follower::new(lines(&["boot"]));
        assert_eq!(f.step(lines(&["boot", "a", "b"])), lines(&["a"]));
        // "b" has not changed: shown now.
        assert_eq!(f.step(lines(&["boot", "a", "b"])), lines(&["b"]));
        assert_eq!(f.step(lines(&["boot", "a", "b"])), lines(&[]));
        // A partial line that is finished before the next poll is shown once, whole.
        assert_eq!(f.step(lines(&["a", "b", "log"])), lines(&[]));
        assert_eq!(
            f.step(lines(&["a", "b", "login: ", "c"])),
            lines(&["login: "])
        );
        assert_eq!(f.step(lines(&["b", "login: ", "c", "d"])), lines(&["c"]));
    }
}
