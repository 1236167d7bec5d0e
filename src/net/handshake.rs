//! The handshake of a binary connection: `Hello` first, then `Auth`, and
//! the phase every other request needs; small frames until `Auth`; a caller
//! whose key was revoked is told so once.

use super::conn::{Conn, Phase};
use super::IoThread;
use crate::limits;
use crate::wire::{
    self, ErrorCode, FrameHeader, Opcode, Request, Response, WireError, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN,
};

const SERVER_NAME: &str = concat!("tidewire/", env!("CARGO_PKG_VERSION"));

fn bad(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

impl IoThread {
    /// Until a `Hello` succeeds, a `Hello` is the only frame taken: any
    /// other frame (known, unknown or malformed) is answered `HelloRequired`
    /// and ends the connection. A request id 0 is a framing error whatever
    /// the phase (`decode_request` answers it).
    pub(super) fn check_hello_first(
        &self,
        index: usize,
        header: &FrameHeader,
    ) -> Result<(), WireError> {
        let phase = self.conns.get(index).map_or(Phase::Hello, |c| c.phase);
        if phase == Phase::Hello && header.opcode != Opcode::Hello as u8 && header.request_id != 0 {
            return Err(WireError::new(
                ErrorCode::HelloRequired,
                "the first frame must be Hello",
            ));
        }
        Ok(())
    }

    /// Whether the connection's phase allows `request`.
    ///
    /// # Errors
    /// `HelloRequired`, `BadRequest` (a second `Hello` or `Auth`),
    /// `AuthRequired` or `AuthFailed` (see [`IoThread::unauthenticated`]).
    pub(super) fn check_phase(
        &mut self,
        index: usize,
        request: &Request<'_>,
    ) -> Result<(), WireError> {
        let phase = self.conns.get(index).map_or(Phase::Hello, |c| c.phase);
        match (request, phase) {
            (Request::Hello { .. }, Phase::Hello) => Ok(()),
            (_, Phase::Hello) => Err(WireError::new(ErrorCode::HelloRequired, "send Hello first")),
            (Request::Hello { .. }, _) => Err(bad("Hello was already received")),
            (Request::Ping { .. }, _) => Ok(()),
            (Request::Auth { .. }, Phase::Ready) => Err(bad("already authenticated")),
            (Request::Auth { .. }, _) => Ok(()),
            (_, Phase::Auth) => Err(self.unauthenticated(index)),
            (_, Phase::Ready) => self.check_caller(index),
        }
    }

    /// Answers `Hello`: the one version this server speaks, or
    /// `UnsupportedVersion` (which ends the connection).
    pub(super) fn hello(
        &mut self,
        index: usize,
        id: u32,
        version_min: u16,
        version_max: u16,
    ) -> Result<(), WireError> {
        let Some(version) = wire::negotiate_version(version_min, version_max) else {
            return Err(WireError::new(
                ErrorCode::UnsupportedVersion,
                format!("this server speaks versions {PROTOCOL_VERSION_MIN} to {PROTOCOL_VERSION}"),
            ));
        };
        if let Some(c) = self.conns.get_mut(index) {
            c.phase = Phase::Auth;
            c.version = version;
        }
        self.respond(
            index,
            id,
            &Response::HelloOk {
                version,
                frame_len_max: limits::FRAME_LEN_MAX,
                server_name: SERVER_NAME,
            },
        );
        Ok(())
    }

    /// Answers `Auth`: the connection works as the caller the keys prove.
    pub(super) fn auth(
        &mut self,
        index: usize,
        id: u32,
        key: &str,
        user_key: &str,
        instance: &str,
    ) -> Result<(), WireError> {
        let caller = self.broker.authenticate(instance, key, user_key)?;
        let (identity_kind, identity_id) = caller.wire();
        let instance = caller
            .instance
            .as_ref()
            .map(|i| i.name().to_string())
            .unwrap_or_default();
        let epoch = self.broker.epoch();
        if let Some(c) = self.conns.get_mut(index) {
            c.phase = Phase::Ready;
            c.caller = Some(caller);
            c.caller_epoch = epoch;
            c.revoked = false;
            c.access_cache = None;
            c.last_channel = None;
        }
        self.respond(
            index,
            id,
            &Response::AuthOk {
                identity_kind,
                identity_id,
                instance: &instance,
            },
        );
        Ok(())
    }

    /// The error for a request that needs a key, on a connection that has none.
    /// The first request after a revocation is told `AuthFailed`; later
    /// ones `AuthRequired`.
    pub(super) fn unauthenticated(&mut self, index: usize) -> WireError {
        if let Some(c) = self.conns.get_mut(index).filter(|c| c.revoked) {
            c.revoked = false;
            WireError::new(ErrorCode::AuthFailed, "the key was revoked")
        } else {
            WireError::new(ErrorCode::AuthRequired, "send Auth first")
        }
    }

    /// Makes sure the connection's caller is current: when the broker's
    /// access epoch moved, the caller is looked up again; a revoked key
    /// ends the authentication (and every subscription) of the connection.
    ///
    /// # Errors
    /// `AuthFailed` when the key, user or instance is gone.
    pub(super) fn check_caller(&mut self, index: usize) -> Result<(), WireError> {
        let epoch = self.broker.epoch();
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        if conn.caller_epoch == epoch {
            return Ok(());
        }
        let fresh = conn.caller.as_ref().and_then(|c| self.broker.refresh(c));
        conn.caller_epoch = epoch;
        conn.access_cache = None;
        conn.last_channel = None;
        match fresh {
            Some(c) => {
                conn.caller = Some(c);
                Ok(())
            }
            None => {
                self.revoke(index);
                Err(self.unauthenticated(index))
            }
        }
    }
}

/// A frame longer than the connection may send now (small until `Auth`
/// succeeds: `FRAME_LEN_UNAUTHENTICATED_MAX`) is refused before its body is
/// buffered.
pub(super) fn check_frame_len(conn: &Conn, header: &FrameHeader) -> Result<(), WireError> {
    let len_max = conn.frame_len_max();
    let len = header
        .body_len
        .saturating_add(limits::FRAME_HEADER_REST_LEN as usize);
    if len > len_max as usize {
        return Err(WireError::new(
            ErrorCode::FrameTooLarge,
            format!("frame length {len} is over {len_max} before authentication"),
        ));
    }
    Ok(())
}
