//! What the worker-manager and its supervisor say to each other over
//! their socket (`SOCK_SEQPACKET`: one message per datagram, in order).
//!
//! From the worker-manager: `run ID` with the process's pipes attached
//! (`SCM_RIGHTS`: the request's pipe, standard output, standard error,
//! and standard input if there is one), and `release ID`. The request
//! itself comes through its pipe, so that no size of environment or
//! arguments meets the socket's message limit: see [`Request`].
//!
//! From the supervisor: `hello` (it is ready), `started ID PID`,
//! `failed ID NOTFOUND|OTHER MESSAGE`, `ended ID exited CODE` or
//! `ended ID signaled SIGNAL`, and `released ID` once nothing of that
//! process's tree is left.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The greeting of a supervisor that is ready.
pub const HELLO: &str = "hello ick-supervisor 2";

/// Most file descriptors a message carries.
pub const MAX_FDS: usize = 4;

/// A message from the worker-manager.
#[derive(Debug, PartialEq, Eq)]
pub enum ToSupervisor {
    /// Start a process; its request is in the first pipe attached.
    Run { id: u64 },
    /// Kill what is left of a process's tree, and forget it.
    Release { id: u64 },
}

/// A message from the supervisor.
#[derive(Debug, PartialEq, Eq)]
pub enum FromSupervisor {
    Hello,
    Started {
        id: u64,
        pid: i32,
    },
    Failed {
        id: u64,
        not_found: bool,
        message: String,
    },
    /// The raw wait status, as `ExitStatus::from_raw` takes it.
    Ended {
        id: u64,
        status: i32,
    },
    Released {
        id: u64,
    },
}

impl ToSupervisor {
    pub fn encode(&self) -> String {
        match self {
            ToSupervisor::Run { id } => format!("run {id}"),
            ToSupervisor::Release { id } => format!("release {id}"),
        }
    }

    pub fn decode(text: &str) -> Option<ToSupervisor> {
        let (verb, id) = text.split_once(' ')?;
        let id = id.parse().ok()?;
        match verb {
            "run" => Some(ToSupervisor::Run { id }),
            "release" => Some(ToSupervisor::Release { id }),
            _ => None,
        }
    }
}

impl FromSupervisor {
    pub fn encode(&self) -> String {
        match self {
            FromSupervisor::Hello => HELLO.to_string(),
            FromSupervisor::Started { id, pid } => format!("started {id} {pid}"),
            FromSupervisor::Failed {
                id,
                not_found,
                message,
            } => {
                let kind = if *not_found { "NOTFOUND" } else { "OTHER" };
                format!("failed {id} {kind} {message}")
            }
            FromSupervisor::Ended { id, status } => {
                format!("ended {id} {}", status_words(*status))
            }
            FromSupervisor::Released { id } => format!("released {id}"),
        }
    }

    pub fn decode(text: &str) -> Option<FromSupervisor> {
        if text == HELLO {
            return Some(FromSupervisor::Hello);
        }
        let (verb, rest) = text.split_once(' ')?;
        let (id, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let id = id.parse().ok()?;
        Some(match verb {
            "started" => FromSupervisor::Started {
                id,
                pid: rest.parse().ok()?,
            },
            "failed" => {
                let (kind, message) = rest.split_once(' ').unwrap_or((rest, ""));
                FromSupervisor::Failed {
                    id,
                    not_found: kind == "NOTFOUND",
                    message: message.to_string(),
                }
            }
            "ended" => FromSupervisor::Ended {
                id,
                status: parse_status(rest)?,
            },
            "released" => FromSupervisor::Released { id },
            _ => return None,
        })
    }
}

/// A wait status as words: `exited CODE` or `signaled SIGNAL`.
fn status_words(raw: i32) -> String {
    use std::os::unix::process::ExitStatusExt;
    let status = std::process::ExitStatus::from_raw(raw);
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(signal)) => format!("signaled {signal}"),
        (None, None) => format!("raw {raw}"),
    }
}

/// The wait status [`status_words`] wrote.
fn parse_status(text: &str) -> Option<i32> {
    let (how, number) = text.split_once(' ')?;
    let number: i32 = number.parse().ok()?;
    match how {
        "exited" => Some((number & 0xff) << 8),
        "signaled" => Some(number & 0x7f),
        "raw" => Some(number),
        _ => None,
    }
}

/// What to start: sent through the request's pipe as fields each ended by
/// a NUL byte (none of them can hold one: they become C strings): marker,
/// user (`UID:GID` or empty), working directory, program, the number of
/// arguments, the arguments, then `NAME=VALUE` entries to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub marker: OsString,
    pub user: Option<(u32, u32)>,
    pub cwd: PathBuf,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(bytes);
            out.push(0);
        };
        field(self.marker.as_bytes());
        let user = self
            .user
            .map(|(u, g)| format!("{u}:{g}"))
            .unwrap_or_default();
        field(user.as_bytes());
        field(self.cwd.as_os_str().as_bytes());
        field(self.program.as_bytes());
        field(self.args.len().to_string().as_bytes());
        for arg in &self.args {
            field(arg.as_bytes());
        }
        for (name, value) in &self.env {
            let mut entry = name.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            field(&entry);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, String> {
        let body = bytes.strip_suffix(&[0]).ok_or("the request is cut short")?;
        let mut fields = body.split(|b| *b == 0);
        let mut next = |what: &str| {
            fields
                .next()
                .map(|f| f.to_vec())
                .ok_or_else(|| format!("the request has no {what}"))
        };
        let marker = OsString::from_vec(next("marker")?);
        let user = match next("user")?.as_slice() {
            [] => None,
            text => {
                let text = String::from_utf8_lossy(text);
                let (u, g) = text.split_once(':').ok_or("the user is not UID:GID")?;
                Some((
                    u.parse().map_err(|_| "the user is not UID:GID")?,
                    g.parse().map_err(|_| "the user is not UID:GID")?,
                ))
            }
        };
        let cwd = PathBuf::from(OsString::from_vec(next("directory")?));
        let program = OsString::from_vec(next("program")?);
        if program.is_empty() {
            return Err("the request has an empty program".into());
        }
        let count: usize = String::from_utf8_lossy(&next("argument count")?)
            .parse()
            .map_err(|_| "the argument count is not a number")?;
        let mut args = Vec::new();
        for _ in 0..count {
            args.push(OsString::from_vec(next("argument")?));
        }
        let mut env = Vec::new();
        for entry in fields {
            let at = entry
                .iter()
                .position(|b| *b == b'=')
                .ok_or("an environment entry has no =")?;
            env.push((
                OsString::from_vec(entry[..at].to_vec()),
                OsString::from_vec(entry[at + 1..].to_vec()),
            ));
        }
        Ok(Request {
            marker,
            user,
            cwd,
            program,
            args,
            env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_written_and_bad_ones_are_refused() {
        for m in [
            ToSupervisor::Run { id: 7 },
            ToSupervisor::Release { id: u64::MAX },
        ] {
            assert_eq!(ToSupervisor::decode(&m.encode()), Some(m));
        }
        for m in [
            FromSupervisor::Hello,
            FromSupervisor::Started { id: 1, pid: 4242 },
            FromSupervisor::Failed {
                id: 2,
                not_found: true,
                message: "No such file or directory (os error 2)".into(),
            },
            FromSupervisor::Failed {
                id: 3,
                not_found: false,
                message: String::new(),
            },
            FromSupervisor::Ended {
                id: 4,
                status: 3 << 8,
            },
            FromSupervisor::Ended { id: 5, status: 9 },
            FromSupervisor::Released { id: 6 },
        ] {
            assert_eq!(FromSupervisor::decode(&m.encode()), Some(m));
        }
        for bad in ["", "run", "run x", "stop 1", "release -1"] {
            assert_eq!(ToSupervisor::decode(bad), None, "{bad:?}");
        }
        for bad in ["started 1", "started 1 x", "ended 1 slept 3", "what 1"] {
            assert_eq!(FromSupervisor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn requests_read_back_as_written_and_bad_ones_are_refused() {
        let request = Request {
            marker: "w/1".into(),
            user: Some((65534, 65534)),
            cwd: "/work space".into(),
            program: "bash".into(),
            args: vec!["-c".into(), "".into(), "echo a=b".into()],
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("EMPTY".into(), "".into()),
                ("EQ".into(), "a=b".into()),
            ],
        };
        assert_eq!(Request::decode(&request.encode()), Ok(request.clone()));
        let bare = Request {
            user: None,
            args: vec![],
            env: vec![],
            ..request
        };
        assert_eq!(Request::decode(&bare.encode()), Ok(bare.clone()));
        let encoded = bare.encode();
        assert!(Request::decode(&encoded[..encoded.len() - 1]).is_err());
        // Fields, each ended by a NUL byte.
        let fields = |f: &[&str]| {
            f.iter()
                .flat_map(|f| f.bytes().chain([0]))
                .collect::<Vec<u8>>()
        };
        assert!(
            Request::decode(&fields(&["m", "x", "/", "true", "0"])).is_err(),
            "bad user"
        );
        assert!(
            Request::decode(&fields(&["m", "", "/", "true", "3", "a"])).is_err(),
            "few args"
        );
        assert!(Request::decode(&fields(&["m", "", "/", "true", "0", "NOEQUALS"])).is_err());
        assert!(
            Request::decode(&fields(&["m", "", "/", "", "0"])).is_err(),
            "no program"
        );
        assert!(Request::decode(&fields(&["m", "", "/", "true", "0"])).is_ok());
    }
}
