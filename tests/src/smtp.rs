//! A real SMTP server for tests, on loopback: the `mailin` crate's SMTP
//! state machine (parser, replies, dot-unstuffing, AUTH) behind a TCP
//! listener that the test can stop — the port closed, open sessions cut —
//! and start again on the same port, as a mail server that goes down and
//! comes back. It may speak STARTTLS or TLS (with a certificate of its own
//! for 127.0.0.1) and require a login. It accepts every message and keeps
//! it raw, with its envelope; [`Mail`] parses one (MIME, with
//! `mail-parser`) for the test's assertions.

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::eventually;

/// A message as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `MAIL FROM`.
    pub from: String,
    /// `RCPT TO`, in order.
    pub to: Vec<String>,
    /// The message (headers and body) as sent after `DATA`.
    pub data: Vec<u8>,
    /// Whether the session was encrypted.
    pub tls: bool,
    /// Who logged in, if anyone did.
    pub user: Option<String>,
}

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP.
    None,
    /// Plain SMTP with STARTTLS offered.
    Starttls,
    /// TLS from the first byte.
    Wrapper,
}

/// What a server requires.
#[derive(Clone)]
struct Settings {
    tls: SmtpTls,
    acceptor: Option<TlsAcceptor>,
    /// The user and password a client must log in with, if any.
    login: Option<(String, String)>,
}

/// A running (or stopped) SMTP server.
pub struct TestSmtp {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// While stopped, its port, bound but not listening (connections are
    /// refused), so that no other test takes it before the restart.
    held: Option<tokio::net::TcpSocket>,
    settings: Settings,
    certificate_pem: Option<String>,
}

impl TestSmtp {
    /// A plain SMTP server on `127.0.0.1` and a free port, without login.
    pub fn start() -> TestSmtp {
        Self::start_secure(SmtpTls::None, None)
    }

    /// A server speaking `tls` with a self-signed certificate for
    /// 127.0.0.1 ([`TestSmtp::certificate_pem`]), which requires the login
    /// `user`/`password` when given (over TLS only).
    pub fn start_secure(tls: SmtpTls, login: Option<(&str, &str)>) -> TestSmtp {
        let (acceptor, certificate_pem) = if tls == SmtpTls::None {
            (None, None)
        } else {
            let (acceptor, pem) = self_signed();
            (Some(acceptor), Some(pem))
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind SMTP");
        let addr = listener.local_addr().expect("SMTP address");
        let mut smtp = TestSmtp {
            addr,
            received: Arc::default(),
            running: None,
            held: None,
            settings: Settings {
                tls,
                acceptor,
                login: login.map(|(u, p)| (u.to_string(), p.to_string())),
            },
            certificate_pem,
        };
        smtp.serve(listener);
        smtp
    }

    /// The server's certificate (PEM), for the client to trust.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Whether it accepts connections now.
    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    /// Stops it: the port is closed and open sessions are cut.
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().expect("SMTP thread");
            self.held = crate::process::hold_port(self.addr);
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.held = None;
        let listener = std::net::TcpListener::bind(self.addr).expect("bind SMTP again");
        self.serve(listener);
    }

    /// Every message received so far, across restarts.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `n` messages have arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        eventually(timeout, &format!("{n} mail(s) to arrive"), || async {
            let all = self.received();
            (all.len() >= n).then_some(all)
        })
        .await
    }

    // mailin's sessions are not `Send`: each server runs its own
    // single-threaded runtime on a thread of its own.
    fn serve(&mut self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop_tx, stop_rx) = oneshot::channel();
        let received = self.received.clone();
        let settings = self.settings.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("SMTP runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let accepting = async {
                    loop {
                        let Ok((stream, peer)) = listener.accept().await else {
                            continue;
                        };
                        tokio::task::spawn_local(session(
                            stream,
                            peer.ip(),
                            received.clone(),
                            settings.clone(),
                        ));
                    }
                };
                tokio::select! {
                    _ = accepting => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the LocalSet and the runtime cuts the open sessions.
        });
        self.running = Some((stop_tx, thread));
    }
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A self-signed certificate for 127.0.0.1: the acceptor and the PEM.
fn self_signed() -> (TlsAcceptor, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("a certificate");
    let pem = cert.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("TLS config");
    (TlsAcceptor::from(Arc::new(config)), pem)
}

/// Collects one session's messages.
struct Collector {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
    /// Set by the session once TLS is on.
    tls: Rc<Cell<bool>>,
    user: Option<String>,
    login: Option<(String, String)>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn log_in(&mut self, user: &str, password: &str) -> Response {
        match &self.login {
            Some((u, p)) if u == user && p == password => {
                self.user = Some(user.to_string());
                mailin::response::AUTH_OK
            }
            _ => mailin::response::INVALID_CREDENTIALS,
        }
    }
}

impl Handler for Collector {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        if self.login.is_some() && self.user.is_none() {
            return Response::custom(530, "Authentication required".to_string());
        }
        mailin::response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_string();
        self.to = to.to_vec();
        self.data.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = Received {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
            tls: self.tls.get(),
            user: self.user.clone(),
        };
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(mail);
        mailin::response::OK
    }

    fn auth_plain(&mut self, _authorization: &str, user: &str, password: &str) -> Response {
        self.log_in(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.log_in(user, password)
    }
}

/// How a conversation ended.
enum Ended<S> {
    Closed,
    /// The client asked for STARTTLS: go on over TLS on this stream.
    StartTls(S),
}

async fn session(
    stream: TcpStream,
    peer: IpAddr,
    received: Arc<Mutex<Vec<Received>>>,
    settings: Settings,
) {
    let tls = Rc::new(Cell::new(false));
    let handler = Collector {
        from: String::new(),
        to: vec![],
        data: vec![],
        tls: tls.clone(),
        user: None,
        login: settings.login.clone(),
        received,
    };
    let mut builder = SessionBuilder::new("ick-test-smtp");
    if settings.tls == SmtpTls::Starttls {
        builder.enable_start_tls();
    }
    if settings.login.is_some() {
        builder.enable_auth(AuthMechanism::Plain);
        builder.enable_auth(AuthMechanism::Login);
    }
    let mut session = builder.build(peer, handler);
    let Some(acceptor) = settings.acceptor else {
        converse(stream, &mut session, true).await;
        return;
    };
    let stream = if settings.tls == SmtpTls::Wrapper {
        stream
    } else {
        match converse(stream, &mut session, true).await {
            Ended::StartTls(stream) => stream,
            Ended::Closed => return,
        }
    };
    let Ok(stream) = acceptor.accept(stream).await else {
        return;
    };
    session.tls_active();
    tls.set(true);
    // With TLS from the first byte the server greets first; after
    // STARTTLS the client speaks first (EHLO again).
    converse(stream, &mut session, settings.tls == SmtpTls::Wrapper).await;
}

/// Speaks SMTP on `stream` until the client leaves or asks for STARTTLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    session: &mut mailin::Session<Collector>,
    greet: bool,
) -> Ended<S> {
    let mut stream = BufReader::new(stream);
    if greet {
        let Ok(greeting) = session.greeting().buffer() else {
            return Ended::Closed;
        };
        if stream.get_mut().write_all(&greeting).await.is_err() {
            return Ended::Closed;
        }
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match stream.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return Ended::Closed,
            Ok(_) => {}
        }
        let response = session.process(&line);
        if response.action == Action::NoReply {
            continue;
        }
        let Ok(bytes) = response.buffer() else {
            return Ended::Closed;
        };
        if stream.get_mut().write_all(&bytes).await.is_err() {
            return Ended::Closed;
        }
        match response.action {
            Action::Reply | Action::NoReply => {}
            Action::Close => return Ended::Closed,
            Action::UpgradeTls => return Ended::StartTls(stream.into_inner()),
        }
    }
}

/// A received message, parsed.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope's sender.
    pub envelope_from: String,
    /// The envelope's recipients.
    pub envelope_to: Vec<String>,
    /// The `From:` address.
    pub from: String,
    /// The `To:` addresses.
    pub to: Vec<String>,
    /// The subject.
    pub subject: String,
    /// The first text part.
    pub text: String,
    /// Every attachment: file name, content type (`type/subtype`) and the
    /// decoded bytes.
    pub attachments: Vec<(String, String, Vec<u8>)>,
    /// Every header as `Name: value`, raw.
    pub headers: Vec<String>,
}

impl Received {
    /// Parses the message; panics if it is not MIME.
    pub fn parse(&self) -> Mail {
        let message = MessageParser::default()
            .parse(&self.data)
            .expect("a MIME message");
        let addresses = |a: Option<&mail_parser::Address>| -> Vec<String> {
            a.map(|a| {
                a.iter()
                    .filter_map(|x| x.address().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
        };
        Mail {
            envelope_from: self.from.clone(),
            envelope_to: self.to.clone(),
            from: addresses(message.from()).join(", "),
            to: addresses(message.to()),
            subject: message.subject().unwrap_or_default().to_string(),
            text: message
                .body_text(0)
                .map(|t| t.into_owned())
                .unwrap_or_default(),
            attachments: message
                .attachments()
                .map(|a| {
                    let ctype = a
                        .content_type()
                        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                        .unwrap_or_default();
                    (
                        a.attachment_name().unwrap_or_default().to_string(),
                        ctype,
                        a.contents().to_vec(),
                    )
                })
                .collect(),
            headers: message
                .headers_raw()
                .map(|(name, value)| format!("{name}: {}", value.trim()))
                .collect(),
        }
    }
}
