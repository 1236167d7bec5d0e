//! The client's one error type, sorted by what the caller must do.

use std::fmt;
use std::io;

use crate::wire::{ErrorCode, WireError};

/// Why a client call failed.
///
/// * [`ClientError::Server`]: the server refused the request; the connection
///   is still usable (unless the code says the server closes it).
/// * [`ClientError::Invalid`]: the arguments were rejected before anything was
///   sent; the connection is untouched.
/// * [`ClientError::Timeout`]: no answer within the read timeout; the
///   connection is in an unknown state and should be dropped.
/// * [`ClientError::Io`], [`ClientError::Closed`], [`ClientError::Protocol`]:
///   the connection is gone or unusable; reconnect.
#[derive(Debug)]
pub enum ClientError {
    /// A socket error.
    Io(io::Error),
    /// The server answered with an error frame.
    Server {
        /// The stable error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server sent bytes this client cannot make sense of.
    Protocol(String),
    /// No answer arrived within the read timeout.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// An argument is outside the protocol's limits; nothing was sent.
    Invalid(String),
}

impl ClientError {
    /// The server's error code, for [`ClientError::Server`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the connection can no longer be used (including server
    /// errors after which the server closes it).
    pub fn is_connection_lost(&self) -> bool {
        match self {
            ClientError::Io(_)
            | ClientError::Closed
            | ClientError::Protocol(_)
            | ClientError::Timeout => true,
            ClientError::Server { code, .. } => code.closes_connection(),
            ClientError::Invalid(_) => false,
        }
    }
}

/// The `snake_case` name of an error code (`ChannelNotFound` → `channel_not_found`).
pub fn error_code_name(code: ErrorCode) -> String {
    let debug = format!("{code:?}");
    let mut out = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "connection error: {e}"),
            ClientError::Server { code, message } => {
                write!(
                    f,
                    "{} ({}): {message}",
                    error_code_name(*code),
                    *code as u16
                )
            }
            ClientError::Protocol(why) => write!(f, "protocol error: {why}"),
            ClientError::Timeout => write!(f, "timed out waiting for the server"),
            ClientError::Closed => write!(f, "the server closed the connection"),
            ClientError::Invalid(why) => write!(f, "invalid argument: {why}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ClientError::Closed,
            _ => ClientError::Io(e),
        }
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> ClientError {
        ClientError::Protocol(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_snake_case() {
        assert_eq!(
            error_code_name(ErrorCode::ChannelNotFound),
            "channel_not_found"
        );
        assert_eq!(error_code_name(ErrorCode::Internal), "internal");
    }

    #[test]
    fn server_errors_display_name_number_and_message() {
        let e = ClientError::Server {
            code: ErrorCode::AuthFailed,
            message: "bad key".into(),
        };
        assert_eq!(e.to_string(), "auth_failed (11): bad key");
        assert_eq!(e.code(), Some(ErrorCode::AuthFailed));
        assert!(!e.is_connection_lost());
    }
}
