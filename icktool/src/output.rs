//! How results are printed: tables and sentences for people, JSON or YAML
//! (the wire types, whole) for scripts.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and sentences.
    Table,
    /// The API's JSON.
    Json,
    /// The API's data as YAML.
    Yaml,
}

/// The printer of one command.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: Format,
}

impl Out {
    pub fn new(format: Format) -> Out {
        Out { format }
    }

    /// Whether people read the output (no `--output json|yaml`).
    pub fn human(&self) -> bool {
        self.format == Format::Table
    }

    /// Prints `value` for scripts, or calls `human` for people.
    pub fn print<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let text = match self.format {
            Format::Table => human(),
            Format::Json => {
                let mut text = serde_json::to_string_pretty(value)?;
                text.push('\n');
                text
            }
            Format::Yaml => serde_yaml::to_string(value)?,
        };
        write_stdout(&text)
    }

    /// Prints a listing: a table with `headers` and `rows` for people, the
    /// whole `value` for scripts.
    pub fn list<T: Serialize + ?Sized>(
        &self,
        value: &T,
        headers: &[&str],
        rows: Vec<Vec<String>>,
        empty: &str,
    ) -> anyhow::Result<()> {
        self.print(value, || {
            if rows.is_empty() {
                return format!("{empty}\n");
            }
            table(headers, rows)
        })
    }
}

/// A plain table: a header row and aligned columns, no borders (easy to
/// read and to `grep`), fitted to the terminal's width when there is one.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    if std::io::stdout().is_terminal() {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        table.set_content_arrangement(ContentArrangement::Disabled);
    }
    table.set_header(headers.iter().map(|h| h.to_uppercase()));
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut text = table
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text
}

/// Writes to stdout; a closed pipe (`icktool … | head`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `3s`, `4m05s`, `2h03m`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// How long ago `at` was: `5s ago`, `3m10s ago`.
pub fn ago(at: DateTime<Utc>) -> String {
    format!("{} ago", duration((Utc::now() - at).num_seconds()))
}

/// A time for tables: UTC, to the second.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `message` without a leading `STATUS:` (node messages may begin with
/// their status, which is shown beside them already).
pub fn without_status<'a>(status: &str, message: &'a str) -> &'a str {
    message
        .strip_prefix(status)
        .and_then(|rest| rest.strip_prefix(':'))
        .map_or(message, str::trim_start)
}

/// An optional value, or `-`.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_not_said_twice() {
        assert_eq!(without_status("skipped", "skipped: a failed"), "a failed");
        assert_eq!(without_status("cancelled", "cancelled: by x"), "by x");
        assert_eq!(without_status("failed", "exit code 3"), "exit code 3");
        assert_eq!(without_status("failed", "failedness"), "failedness");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(7380), "2h03m");
    }

    #[test]
    fn tables_have_a_header_and_aligned_columns() {
        let text = table(
            &["name", "revision"],
            vec![
                vec!["a".into(), "1".into()],
                vec!["longer".into(), "12".into()],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("NAME") && lines[0].contains("REVISION"));
        assert_eq!(lines.len(), 3, "{text}");
        let col = lines[0].find("REVISION").expect("header");
        assert_eq!(lines[2].find("12"), Some(col), "{text}");
    }
}
