//! Opcode, error-code and ack-mode numbers: lookups and the lists the
//! table check against `protocol.md` walks.

use crate::wire::{AckMode, ErrorCode, Opcode};

impl Opcode {
    /// The opcode for a byte, if this build knows it.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Opcode::ALL.iter().copied().find(|op| *op as u8 == v)
    }

    /// True for opcodes a client sends (below 0x80).
    pub fn is_request(self) -> bool {
        (self as u8) < 0x80
    }

    /// True for server pushes, which always carry request_id 0.
    pub fn is_push(self) -> bool {
        matches!(
            self,
            Opcode::Deliver
                | Opcode::Gap
                | Opcode::SubscriptionClosed
                | Opcode::Truncated
                | Opcode::Live
        )
    }

    /// Every opcode, for the table check against `protocol.md`.
    pub const ALL: &'static [Opcode] = &[
        Opcode::Hello,
        Opcode::Auth,
        Opcode::Ping,
        Opcode::Publish,
        Opcode::Edit,
        Opcode::Delete,
        Opcode::Subscribe,
        Opcode::Unsubscribe,
        Opcode::History,
        Opcode::Fetch,
        Opcode::ChannelCreate,
        Opcode::ChannelGet,
        Opcode::ChannelList,
        Opcode::ChannelUpdate,
        Opcode::ChannelDelete,
        Opcode::Admin,
        Opcode::HelloOk,
        Opcode::AuthOk,
        Opcode::Pong,
        Opcode::Ok,
        Opcode::PublishAck,
        Opcode::Subscribed,
        Opcode::Unsubscribed,
        Opcode::HistoryPage,
        Opcode::Message,
        Opcode::Channel,
        Opcode::Channels,
        Opcode::AdminResult,
        Opcode::Deliver,
        Opcode::Gap,
        Opcode::SubscriptionClosed,
        Opcode::Truncated,
        Opcode::Live,
        Opcode::Error,
    ];
}

impl ErrorCode {
    /// The error code for a number, if this build knows it.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| *c as u16 == v)
    }

    /// True when the server closes the connection after sending this code.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::MalformedFrame
                | ErrorCode::FrameTooLarge
                | ErrorCode::UnsupportedVersion
                | ErrorCode::HelloRequired
                | ErrorCode::HandshakeTimeout
                | ErrorCode::ShuttingDown
        )
    }

    /// Every error code, for the table check against `protocol.md`.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::HelloRequired,
        ErrorCode::UnknownOpcode,
        ErrorCode::BadRequest,
        ErrorCode::AuthRequired,
        ErrorCode::AuthFailed,
        ErrorCode::PermissionDenied,
        ErrorCode::ChannelNotFound,
        ErrorCode::ChannelExists,
        ErrorCode::RoomRequired,
        ErrorCode::CustomPublishDisabled,
        ErrorCode::MessageNotFound,
        ErrorCode::InvalidName,
        ErrorCode::InstanceNotFound,
        ErrorCode::InstanceExists,
        ErrorCode::IdentityNotFound,
        ErrorCode::IdentityExists,
        ErrorCode::LimitExceeded,
        ErrorCode::SubscriptionExists,
        ErrorCode::UnknownSubscription,
        ErrorCode::AheadOfHead,
        ErrorCode::HandshakeTimeout,
        ErrorCode::MessageDeleted,
        ErrorCode::StorageFull,
        ErrorCode::StorageFailed,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];
}

impl AckMode {
    /// The ack mode for a wire byte.
    pub fn from_u8(v: u8) -> Option<AckMode> {
        Some(match v {
            0 => AckMode::None,
            1 => AckMode::Append,
            2 => AckMode::Durable,
            _ => return None,
        })
    }
}
