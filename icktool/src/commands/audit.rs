//! `icktool audit [--project P] [--actor A] [--since T]`: who changed what,
//! newest first (an admin's; a project's owner's with `--project`). The
//! controller's log and, without `--project`, the IDP's (clients, users,
//! groups) when the caller may read it, as one list.

use anyhow::bail;
use chrono::{DateTime, Utc};
use ick_api::audit::{AuditList, AuditQuery};
use reqwest::{Method, StatusCode};

use crate::Exit;
use crate::connection::{Ick, Service, read_json};
use crate::output::{Out, time};

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Only changes of this project.
    #[arg(long, short = 'p')]
    project: Option<String>,
    /// Only changes by this actor: user:NAME, client:NAME, webhook:FORGE,
    /// or a NAME of any kind.
    #[arg(long, short = 'a')]
    actor: Option<String>,
    /// Only changes since this time: RFC 3339 (2026-12-01T09:00:00Z) or a
    /// while ago (30m, 12h, 7d).
    #[arg(long, value_parser = since)]
    since: Option<DateTime<Utc>>,
    /// At most this many (1 to 500).
    #[arg(long, short = 'n', default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: u32,
}

/// A time, or how long ago.
fn since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("{text:?} is neither an RFC 3339 time nor a while ago like 30m, 12h or 7d"),
    };
    let Ok(n) = number.parse::<i64>() else {
        bail!("{text:?} is neither an RFC 3339 time nor a while ago like 30m, 12h or 7d");
    };
    Ok(Utc::now() - chrono::Duration::seconds(n.saturating_mul(seconds)))
}

pub async fn run(ick: &Ick, args: AuditArgs, out: &Out) -> anyhow::Result<Exit> {
    let query = AuditQuery {
        project: args.project,
        actor: args.actor,
        since: args
            .since
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        before: None,
        limit: Some(args.limit),
    };
    let mut list: AuditList = ick.get_query(Service::Controller, "/audit", &query).await?;
    if query.project.is_none() {
        // Only `idp:admin` reads the IDP's log; without it, the
        // controller's is the whole answer.
        let answer = ick
            .send(
                Service::Idp,
                Method::GET,
                "/audit",
                &[StatusCode::FORBIDDEN],
                |r| r.query(&query),
            )
            .await?;
        if answer.status() != StatusCode::FORBIDDEN {
            let idp: AuditList = read_json(answer).await?;
            list.entries.extend(idp.entries);
            // Two logs merged have no one cursor to go on from.
            list.next = None;
            list.entries.sort_by_key(|e| std::cmp::Reverse(e.at));
            list.entries.truncate(args.limit as usize);
        }
    }
    let rows = list
        .entries
        .iter()
        .map(|e| {
            let detail = match &e.detail {
                serde_json::Value::Object(map) if map.is_empty() => String::new(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            vec![
                time(e.at),
                e.actor.clone(),
                e.address.clone(),
                e.action.to_string(),
                e.project.clone().unwrap_or_default(),
                e.target.clone(),
                detail,
            ]
        })
        .collect();
    out.list(
        &list,
        &[
            "at", "actor", "address", "action", "project", "target", "detail",
        ],
        rows,
        "no changes recorded",
    )?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_or_a_while_ago() {
        let t = since("2026-12-01T09:00:00Z").expect("a time");
        assert_eq!(t.to_rfc3339(), "2026-12-01T09:00:00+00:00");
        let ago = Utc::now() - since("2h").expect("a while");
        assert!((ago.num_seconds() - 7200).abs() < 5, "{ago}");
        for bad in ["yesterday", "2x", "h", ""] {
            assert!(since(bad).is_err(), "{bad}");
        }
    }
}
