//! The mail itself: subject, plain-text body and the log attachment, from
//! what the outbox row and the stored output say. Pure functions but for
//! [`build`], which hands the parts to lettre.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use ick_api::controller::{BuildStatus, LogChunk};
use lettre::Message;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use serde_json::Value;

use super::Details;
use crate::store::notifications::NotificationRow;

/// Logs larger than this are attached gzip-compressed.
pub const GZIP_OVER: usize = 1024 * 1024;
/// How many of the failed action's last lines the body quotes.
pub const TAIL_LINES: usize = 50;

/// A mail before it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
    pub attachment_name: String,
    pub attachment_type: &'static str,
    pub attachment: Vec<u8>,
}

/// `succeeded`, `FAILED` or `cancelled`, as the subject says it.
pub fn status_word(status: BuildStatus) -> &'static str {
    match status {
        BuildStatus::Succeeded => "succeeded",
        BuildStatus::Failed => "FAILED",
        BuildStatus::Cancelled => "cancelled",
        BuildStatus::Queued => "queued",
        BuildStatus::Running => "running",
    }
}

/// `4.2s`, `3m 04s`, `1h 02m 03s`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

/// The last `n` lines of the text of `chunks`.
pub fn tail(chunks: &[LogChunk], n: usize) -> Vec<String> {
    let text: String = chunks.iter().map(|c| c.data.as_str()).collect();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

fn parameter<'a>(details: &'a Details, name: &str) -> Option<&'a str> {
    details.parameters.get(name).and_then(Value::as_str)
}

/// The build's text log as a mail attaches it, written a piece at a time
/// (it is read from the database a page at a time): as it is, or, once
/// larger than [`GZIP_OVER`], compressed as it comes.
#[derive(Default)]
pub struct LogFile {
    raw: Vec<u8>,
    gz: Option<GzEncoder<Vec<u8>>>,
}

impl LogFile {
    /// Appends `text`.
    pub fn write(&mut self, text: &str) {
        if let Some(gz) = &mut self.gz {
            let _ = gz.write_all(text.as_bytes());
            return;
        }
        self.raw.extend_from_slice(text.as_bytes());
        if self.raw.len() > GZIP_OVER {
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            let _ = gz.write_all(&self.raw);
            self.raw = Vec::new();
            self.gz = Some(gz);
        }
    }

    /// Whether it is compressed, and its bytes.
    fn finish(self) -> (bool, Vec<u8>) {
        match self.gz {
            Some(gz) => (true, gz.finish().unwrap_or_default()),
            None => (false, self.raw),
        }
    }
}

/// The subject, body and attachment of the mail about `n`. `log` is the
/// build's whole text log; `failed_output` the failed action's chunks.
pub fn render(
    n: &NotificationRow,
    details: &Details,
    public_url: &str,
    log: LogFile,
    failed_output: &[LogChunk],
) -> Rendered {
    let word = status_word(n.build_status);
    let subject = format!("[ick] {} #{} {word}", n.project, n.number);
    let started = details.started_at.unwrap_or(details.created_at);
    let mut body = String::new();
    let mut line = |label: &str, value: &str| body.push_str(&format!("{label:<11} {value}\n"));
    line("Project:", &n.project);
    if n.run > 1 {
        line("Build:", &format!("#{} (run {})", n.number, n.run));
    } else {
        line("Build:", &format!("#{}", n.number));
    }
    line("Status:", word);
    line("Duration:", &duration(details.ended_at - started));
    line(
        "Commit:",
        details.commit.as_deref().unwrap_or("(none given)"),
    );
    if let Some(r) = parameter(details, "git_ref") {
        line("Ref:", r);
    }
    if let Some(u) = parameter(details, "git_url") {
        line("Repository:", u);
    }
    let url = format!("{}/builds/{}", public_url.trim_end_matches('/'), n.build_id);
    line("URL:", &url);
    if let Some(f) = &details.failed {
        body.push('\n');
        body.push_str(&format!(
            "Failed action: {} action {} ({}){}\n",
            f.pipeline,
            f.index + 1,
            f.description,
            f.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
        let lines = tail(failed_output, TAIL_LINES);
        if lines.is_empty() {
            body.push_str("It wrote no output.\n");
        } else {
            body.push_str(&format!(
                "The last {} line{} of its output:\n\n",
                lines.len(),
                if lines.len() == 1 { "" } else { "s" }
            ));
            for l in lines {
                body.push_str("    ");
                body.push_str(&l);
                body.push('\n');
            }
        }
    }
    let (attachment_name, attachment_type, attachment) = match log.finish() {
        (true, bytes) => (
            format!("build-{}.log.gz", n.number),
            "application/gzip",
            bytes,
        ),
        (false, bytes) => (
            format!("build-{}.log", n.number),
            "text/plain; charset=utf-8",
            bytes,
        ),
    };
    body.push_str(&format!(
        "\nThe build's whole log is attached ({attachment_name}).\n"
    ));
    Rendered {
        subject,
        body,
        attachment_name,
        attachment_type,
        attachment,
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): no vacation replies.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

/// The mail to send; `Err` says why it cannot be (a recipient that is not
/// an address), which no retry changes.
/// The mail of notification `id`. Its Message-ID comes from the
/// notification, so that a resend (after a crash mid-send) is the same
/// message to the mail system, which may drop the copy.
pub fn build(
    id: &str,
    from: &Mailbox,
    recipients: &[String],
    r: Rendered,
) -> Result<Message, String> {
    let mut builder = Message::builder()
        .message_id(Some(format!("<{id}@{}>", from.email.domain())))
        .from(from.clone())
        .subject(r.subject)
        .header(AutoSubmitted);
    for to in recipients {
        let mailbox: Mailbox = to
            .parse()
            .map_err(|e| format!("recipient {to:?} is not an email address: {e}"))?;
        builder = builder.to(mailbox);
    }
    let attachment_type =
        ContentType::parse(r.attachment_type).map_err(|e| format!("attachment type: {e}"))?;
    // Base64 keeps the log byte for byte (line ends included).
    let attachment = Body::new_with_encoding(r.attachment, ContentTransferEncoding::Base64)
        .map_err(|_| "the log cannot be encoded".to_string())?;
    builder
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(r.body))
                .singlepart(Attachment::new(r.attachment_name).body(attachment, attachment_type)),
        )
        .map_err(|e| format!("the mail cannot be built: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ick_api::controller::NotificationStatus;
    use ick_api::work::Stream;

    fn row(status: BuildStatus) -> NotificationRow {
        NotificationRow {
            seq: 1,
            id: "n".into(),
            build_id: "b-1".into(),
            project: "hello".into(),
            number: 7,
            run: 1,
            build_status: status,
            recipients: vec!["a@example.org".into()],
            details: String::new(),
            status: NotificationStatus::Pending,
            attempts: 0,
            next_attempt_at: 0,
            lease_until: None,
            last_error: None,
            created_at: 0,
            sent_at: None,
        }
    }

    fn details(failed: bool) -> Details {
        Details {
            created_at: 1_000,
            started_at: Some(2_000),
            ended_at: 65_500,
            parameters: [("git_ref".to_string(), Value::from("refs/heads/main"))].into(),
            commit: Some("abc123".into()),
            failed: failed.then(|| super::super::FailedAction {
                node: "x".into(),
                attempt: 1,
                pipeline: "test".into(),
                index: 1,
                description: "shell: make check".into(),
                message: Some("exited with code 2".into()),
            }),
        }
    }

    fn chunk(data: &str) -> LogChunk {
        LogChunk {
            node: "x".into(),
            pipeline: "test".into(),
            index: 1,
            attempt: 1,
            seq: 0,
            stream: Stream::Stdout,
            data: data.into(),
        }
    }

    fn text_log(text: &str) -> LogFile {
        let mut log = LogFile::default();
        // In pieces, as pages come.
        for piece in text.as_bytes().chunks(100_000) {
            log.write(std::str::from_utf8(piece).expect("ascii"));
        }
        log
    }

    #[test]
    fn a_failure_mail_names_the_action_and_quotes_its_last_lines() {
        let output: String = (1..=80).map(|i| format!("line {i}\n")).collect();
        let r = render(
            &row(BuildStatus::Failed),
            &details(true),
            "https://ick.example.org/",
            text_log("the log"),
            &[chunk(&output)],
        );
        assert_eq!(r.subject, "[ick] hello #7 FAILED");
        for want in [
            "Project:    hello\n",
            "Build:      #7\n",
            "Status:     FAILED\n",
            "Duration:   1m 03s\n",
            "Commit:     abc123\n",
            "Ref:        refs/heads/main\n",
            "URL:        https://ick.example.org/builds/b-1\n",
            "Failed action: test action 2 (shell: make check): exited with code 2\n",
            "The last 50 lines of its output:\n\n    line 31\n",
            "    line 80\n",
        ] {
            assert!(r.body.contains(want), "{want:?} not in:\n{}", r.body);
        }
        assert!(!r.body.contains("line 30\n"), "{}", r.body);
        assert_eq!(r.attachment_name, "build-7.log");
        assert_eq!(r.attachment, b"the log");
    }

    #[test]
    fn large_logs_are_attached_compressed() {
        let log = "x".repeat(GZIP_OVER + 1);
        let r = render(
            &row(BuildStatus::Succeeded),
            &details(false),
            "http://i",
            text_log(&log),
            &[],
        );
        assert_eq!(r.subject, "[ick] hello #7 succeeded");
        assert_eq!(r.attachment_name, "build-7.log.gz");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(r.attachment.as_slice()),
            &mut text,
        )
        .expect("gzip");
        assert_eq!(text, log);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(4_200), "4.2s");
        assert_eq!(duration(184_000), "3m 04s");
        assert_eq!(duration(3_723_000), "1h 02m 03s");
    }

    #[test]
    fn a_bad_recipient_is_named() {
        let from: Mailbox = "Ick <ick@example.org>".parse().expect("mailbox");
        let r = render(
            &row(BuildStatus::Cancelled),
            &details(false),
            "http://i",
            LogFile::default(),
            &[],
        );
        assert_eq!(r.subject, "[ick] hello #7 cancelled");
        let e = build("n1", &from, &["not an address".into()], r.clone()).expect_err("refused");
        assert!(e.contains("\"not an address\""), "{e}");
        assert!(build("n1", &from, &["a@example.org".into()], r).is_ok());
    }
}
