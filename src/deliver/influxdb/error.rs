//! The error of an InfluxDB output, in ripgrep's style: one [`Error`] whose [`ErrorKind`] says
//! which part failed (for code that branches on it) and whose message says what is wrong and
//! how to fix it (for the operator). Secrets never appear in a message.

use std::fmt;

/// Which part of an output failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The output's configuration: its URL, a secret that cannot be read, a TLS file.
    Config,
    /// No HTTP answer: connection refused or reset, timeout, DNS, TLS handshake.
    Transport,
    /// The server answered, but refused what was asked (e.g. creating the database).
    Server,
}

/// An output's error: its kind and a message with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Config,
            message: message.into(),
        }
    }

    /// A request that got no HTTP answer.
    pub fn transport(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Transport,
            message: message.into(),
        }
    }

    /// A server's refusal.
    pub fn server(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Server,
            message: message.into(),
        }
    }

    /// Which part failed.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
