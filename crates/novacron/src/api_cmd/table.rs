//! Text output of the API commands: aligned tables, key/value blocks, short ids and
//! durations.

use std::fmt::Write as _;
use std::time::Duration;

/// Columns separated by two spaces, each as wide as its widest cell; the last column is not
/// padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key:  value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let key = format!("{k}:");
        let _ = writeln!(out, "{key:<width$}  {v}");
    }
    out
}

/// The first 8 characters of an id (a UUID's first group).
pub fn short_id(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

/// `3d4h`, `2h5m`, `4m12s`, `12s`: the two largest units.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins}m")
    } else if mins > 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// The value or `-`.
pub fn or_dash(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let rows = vec![
            vec!["web-1".to_owned(), "running".to_owned(), "2".to_owned()],
            vec!["db".to_owned(), "stopped".to_owned(), "16".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "STATE", "VCPUS"], &rows),
            "NAME   STATE    VCPUS\n\
             web-1  running  2\n\
             db     stopped  16\n"
        );
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
    }

    #[test]
    fn key_values_align_the_values() {
        let kv = key_values(&[("name", "web".into()), ("state_reason", "-".into())]);
        assert_eq!(kv, "name:          web\nstate_reason:  -\n");
    }

    #[test]
    fn durations_show_their_two_largest_units() {
        assert_eq!(human_duration(Duration::from_secs(12)), "12s");
        assert_eq!(human_duration(Duration::from_secs(252)), "4m12s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2h5m");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d4h"
        );
    }

    #[test]
    fn short_ids_keep_the_first_group() {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(short_id(&id), "0f8fad5b");
        assert_eq!(or_dash(None::<u32>), "-");
        assert_eq!(or_dash(Some(3)), "3");
    }
}
