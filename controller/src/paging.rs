//! Newest-first listings in pages (`?status=a,b&before=CURSOR&limit=N`):
//! one reading of the query and one cut of the page, for builds and
//! notifications alike.

use std::str::FromStr;

use crate::error::{ControllerError, Result};

/// A listing's query, checked.
pub struct Page<S> {
    /// Only these states (all when empty).
    pub statuses: Vec<S>,
    /// Only rows older than this cursor.
    pub before: Option<i64>,
    /// At most this many (1 to 500, default 50).
    pub limit: i64,
}

impl<S: FromStr<Err = String>> Page<S> {
    pub fn parse(status: Option<&str>, before: Option<&str>, limit: Option<u32>) -> Result<Self> {
        let statuses = match status {
            Some(s) if !s.is_empty() => s
                .split(',')
                .map(|s| s.trim().parse())
                .collect::<std::result::Result<_, _>>()
                .map_err(ControllerError::BadRequest)?,
            _ => vec![],
        };
        let before = match before {
            Some(b) if !b.is_empty() => Some(b.parse::<i64>().map_err(|_| {
                ControllerError::BadRequest(format!("before={b:?} is not a cursor from `next`"))
            })?),
            _ => None,
        };
        Ok(Page {
            statuses,
            before,
            limit: i64::from(limit.unwrap_or(50).clamp(1, 500)),
        })
    }

    /// `rows`, read with a limit of `self.limit + 1`, cut to the page;
    /// and the cursor of the next page, if there is one.
    pub fn cut<R>(&self, mut rows: Vec<R>, seq: impl Fn(&R) -> i64) -> (Vec<R>, Option<String>) {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next = more
            .then(|| rows.last().map(|r| seq(r).to_string()))
            .flatten();
        (rows, next)
    }
}
