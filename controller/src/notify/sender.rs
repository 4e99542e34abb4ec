//! The task that empties the outbox: it claims one due notification at a
//! time (a lease, so that controllers sharing the database never send the
//! same one), renders and sends it, and records how that went: sent, due
//! again after a backoff, or — after `mail.max_attempts` tries, or at once
//! for a mail that cannot even be written (a recipient that is no address)
//! — failed, with its last error.

use std::time::Duration;

use ick_api::controller::LogChunk;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::Details;
use super::message;
use crate::config::{MailConfig, MailTls};
use crate::core::Core;
use crate::error::{ControllerError, Result};
use crate::store::notifications::{self as ndb, NotificationRow};
use crate::store::{from_json, logs as ldb, now_ms};

/// How long a send under way may go on once the controller stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The SMTP side: built once at start.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    config: MailConfig,
    public_url: String,
}

impl Mailer {
    /// A mailer for `config`; fails on what cannot work (an unreadable
    /// password file, a host lettre refuses).
    pub fn new(config: &MailConfig, public_url: &str) -> anyhow::Result<Mailer> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("mail.from {:?}: {e}", config.from))?;
        let host = config.host.as_str();
        let tls = match config.tls {
            MailTls::None => Tls::None,
            MailTls::Starttls => Tls::Required(tls_parameters(config)?),
            MailTls::Tls => Tls::Wrapper(tls_parameters(config)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .tls(tls)
            .port(config.port())
            .timeout(Some(config.timeout));
        if let Some(user) = &config.username {
            let password = config
                .password()?
                .ok_or_else(|| anyhow::anyhow!("mail.username is set but no password"))?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            config: config.clone(),
            public_url: public_url.to_string(),
        })
    }
}

/// How the server's certificate is checked: the system's roots, and
/// `ca_file`'s certificates too.
fn tls_parameters(config: &MailConfig) -> anyhow::Result<TlsParameters> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| anyhow::anyhow!("cannot read mail.ca_file {}: {e}", ca.display()))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("mail.ca_file {}: {e}", ca.display()))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build_rustls()
        .map_err(|e| anyhow::anyhow!("mail TLS settings for {:?}: {e}", config.host))
}

/// Why a try failed, and whether another try could help.
struct Failure {
    error: String,
    permanent: bool,
}

impl From<ControllerError> for Failure {
    fn from(e: ControllerError) -> Self {
        Failure {
            error: e.to_string(),
            permanent: false,
        }
    }
}

/// The wait before try `attempts + 1`: `retry`, doubled after each
/// failure, at most `retry_max`.
pub fn backoff(config: &MailConfig, attempts: i64) -> Duration {
    let doublings = (attempts.max(1) - 1).min(30) as u32;
    config
        .retry
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(config.retry_max)
}

/// Sends what is due until stopped.
pub async fn run(core: Core, mailer: Mailer) {
    let poll = mailer.config.poll_interval;
    loop {
        loop {
            if core.cancel.is_cancelled() {
                return;
            }
            match send_next(&core, &mailer).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the mail outbox failed");
                    break;
                }
            }
        }
        let wait = match next_due(&core).await {
            Some(due) => Duration::from_millis((due - now_ms()).max(0) as u64).min(poll),
            None => poll,
        };
        tokio::select! {
            _ = core.cancel.cancelled() => return,
            _ = core.mail_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn next_due(core: &Core) -> Option<i64> {
    let mut conn = core.store.conn().await.ok()?;
    ndb::next_due(&mut conn).await.ok().flatten()
}

/// Claims and sends one due notification; `false` if none is due.
async fn send_next(core: &Core, mailer: &Mailer) -> Result<bool> {
    let lease = mailer.config.lease();
    let now = now_ms();
    let claimed = {
        let mut w = core.store.write_one().await?;
        let claimed =
            ndb::claim_next(&core.store, &mut w, now, now + lease.as_millis() as i64).await?;
        w.done().await?;
        claimed
    };
    let Some(n) = claimed else {
        return Ok(false);
    };
    // Never outlive the lease: past it, another sender may take the row.
    let sending = tokio::time::timeout(lease * 3 / 4, deliver(core, mailer, &n));
    tokio::pin!(sending);
    let tried = tokio::select! {
        tried = &mut sending => tried,
        // Stopping: a send under way gets a moment to end (cut short, the
        // server may have the mail and a later try would send it twice).
        _ = core.cancel.cancelled() => match tokio::time::timeout(STOP_GRACE, &mut sending).await {
            Ok(tried) => tried,
            Err(_) => Ok(Err(Failure {
                error: "the controller stopped while sending".to_string(),
                permanent: false,
            })),
        },
    };
    let outcome = match tried {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure {
            error: format!("sending took longer than {:?}", lease * 3 / 4),
            permanent: false,
        }),
    };
    let mut w = core.store.write_one().await?;
    match outcome {
        Ok(()) => {
            if ndb::mark_sent(&mut w, &n.id, n.attempts, now_ms()).await? {
                tracing::info!(notification = %n.id, build_id = %n.build_id, attempts = n.attempts, "notification sent");
            } else {
                tracing::warn!(notification = %n.id, "notification sent after its claim was lost");
            }
        }
        Err(f) => {
            let last = f.permanent || n.attempts >= i64::from(mailer.config.max_attempts);
            let next =
                (!last).then(|| now_ms() + backoff(&mailer.config, n.attempts).as_millis() as i64);
            ndb::mark_failed_try(&mut w, &n.id, n.attempts, &f.error, next).await?;
            if last {
                tracing::error!(notification = %n.id, build_id = %n.build_id, attempts = n.attempts, error = %f.error, "notification failed; kept with its error");
            } else {
                tracing::warn!(notification = %n.id, build_id = %n.build_id, attempts = n.attempts, error = %f.error, "sending a notification failed; trying again later");
            }
        }
    }
    w.done().await?;
    Ok(true)
}

/// Renders the mail from what is stored and hands it to the SMTP server.
async fn deliver(
    core: &Core,
    mailer: &Mailer,
    n: &NotificationRow,
) -> std::result::Result<(), Failure> {
    let details: Details = from_json(&n.details)?;
    let failed_output: Vec<LogChunk> = {
        let mut conn = core.store.conn().await.map_err(Failure::from)?;
        match &details.failed {
            Some(f) => ldb::node_log_from(&mut conn, &f.node, f.attempt, 0).await?,
            None => vec![],
        }
    };
    // The log a page at a time, compressed as it comes once large.
    let mut log = message::LogFile::default();
    let mut text_log = crate::logs::TextLog::default();
    let pages = crate::logs::pages(
        core.store.clone(),
        n.build_id.clone(),
        None,
        Some(details.ended_at),
    );
    futures::pin_mut!(pages);
    while let Some(page) = futures::StreamExt::next(&mut pages).await {
        let mut text = String::new();
        for c in &page? {
            text_log.push(c, &mut text);
        }
        log.write(&text);
    }
    let row = n.clone();
    let public_url = mailer.public_url.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        message::render(&row, &details, &public_url, log, &failed_output)
    })
    .await
    .map_err(|e| Failure {
        error: format!("rendering the mail failed: {e}"),
        permanent: false,
    })?;
    let mail =
        message::build(&n.id, &mailer.from, &n.recipients, rendered).map_err(|error| Failure {
            error,
            permanent: true,
        })?;
    // Even a refusal the server calls permanent (a wrong password, an
    // unknown recipient) is tried again: its cause may be fixed meanwhile,
    // and a notification given up too soon is a mail lost.
    mailer
        .transport
        .send(mail)
        .await
        .map(|_| ())
        .map_err(|e| Failure {
            permanent: false,
            error: format!("SMTP {}:{}: {e}", mailer.config.host, mailer.config.port()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_cap() {
        let config: MailConfig =
            serde_yaml::from_str("{host: h, from: a@b.org, retry: 10s, retry_max: 60s}")
                .expect("config");
        let waits: Vec<u64> = (1..=5).map(|a| backoff(&config, a).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40, 60, 60]);
        assert_eq!(backoff(&config, 1000).as_secs(), 60);
    }
}
