//! The history store's error, in ripgrep's style: one [`Error`] whose [`ErrorKind`] says what
//! failed and whose message says what it means for the data and how to fix it.

use std::fmt;

/// What failed in the history store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file cannot be opened (or a reopen is not due yet).
    Unavailable,
    /// The file reached `[store] max_size` or the disk is full.
    Full,
    /// The file is damaged.
    Damaged,
    /// Any other failed write.
    Write,
}

/// A history store error: its kind and a message with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// What failed.
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
