//! A real SMTP server for tests, on loopback: the `mailin` crate's SMTP
//! state machine (parser, replies, dot-unstuffing) behind a TCP listener
//! that the test can stop — the port closed, open sessions cut — and start
//! again on the same port, as a mail server that goes down and comes back.
//! It accepts every message and keeps it raw, with its envelope; [`Mail`]
//! parses one (MIME, with `mail-parser`) for the test's assertions.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

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
}

/// A running (or stopped) SMTP server.
pub struct TestSmtp {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TestSmtp {
    /// A server on `127.0.0.1` and a free port.
    pub fn start() -> TestSmtp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind SMTP");
        let addr = listener.local_addr().expect("SMTP address");
        let mut smtp = TestSmtp {
            addr,
            received: Arc::default(),
            running: None,
        };
        smtp.serve(listener);
        smtp
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
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
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
                        tokio::task::spawn_local(session(stream, peer.ip(), received.clone()));
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

/// Collects one session's messages.
struct Collector {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Handler for Collector {
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
        };
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(mail);
        mailin::response::OK
    }
}

async fn session(stream: tokio::net::TcpStream, peer: IpAddr, received: Arc<Mutex<Vec<Received>>>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let handler = Collector {
        from: String::new(),
        to: vec![],
        data: vec![],
        received,
    };
    let mut session = SessionBuilder::new("ick-test-smtp").build(peer, handler);
    let Ok(greeting) = session.greeting().buffer() else {
        return;
    };
    if write.write_all(&greeting).await.is_err() {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match read.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => continue,
            Action::Reply | Action::Close | Action::UpgradeTls => {
                let Ok(bytes) = response.buffer() else { return };
                if write.write_all(&bytes).await.is_err() || response.action != Action::Reply {
                    return;
                }
            }
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
