//! The binary protocol: frame layout, opcodes, error codes, and the sans-IO
//! codec of every request, response and push (normative text: `protocol.md`).
//!
//! Owns: every byte layout on the wire. Never touches sockets or files.
//! Decoders take `&[u8]` and return `Ok(None)` when more bytes are needed.
//!
//! Frame (all integers little-endian):
//!
//! ```text
//! 0   u32  len         bytes after this field (8 + body), 8..=FRAME_LEN_MAX
//! 4   u8   opcode
//! 5   u8   flags       0
//! 6   u16  reserved    0
//! 8   u32  request_id  chosen by the client (non-zero), echoed in the response;
//!                      0 in pushes and in connection-level errors
//! 12  ...  body
//! ```
//!
//! The server (`net`, `broker`), the client and the bench share these types.

mod codec;
mod codes;
#[doc(hidden)]
pub mod fuzzing;
mod payload;
mod reader;
mod request;
mod response;
#[cfg(test)]
mod tests;
mod uuid;

pub use codec::*;
pub use payload::check_payload;
pub use request::*;
pub use response::*;
pub use uuid::{format_uuid, parse_uuid};

/// Bytes of the frame header (length prefix included).
pub const FRAME_HEADER_LEN: usize = 12;
/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;
/// The oldest protocol version this build speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// Every opcode. Client requests are below 0x80; server responses and pushes
/// are 0x80 and above. Retired opcodes are never reused.
///
/// Normative table: `protocol.md`, section "Opcodes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Client: version negotiation; must be the first frame.
    Hello = 0x01,
    /// Client: authenticate with a key (and optional user key).
    Auth = 0x02,
    /// Client: liveness check; the body is echoed.
    Ping = 0x03,
    /// Client: publish one or more messages to a channel.
    Publish = 0x10,
    /// Client: edit a message (appends an edit record).
    Edit = 0x11,
    /// Client: delete a message (appends a remove record).
    Delete = 0x12,
    /// Client: start a subscription.
    Subscribe = 0x20,
    /// Client: end a subscription.
    Unsubscribe = 0x21,
    /// Client: read a page of history.
    History = 0x30,
    /// Client: read one message by id.
    Fetch = 0x31,
    /// Client: create a channel (JSON body).
    ChannelCreate = 0x40,
    /// Client: read a channel's settings.
    ChannelGet = 0x41,
    /// Client: list channels.
    ChannelList = 0x42,
    /// Client: change a channel's settings (JSON body).
    ChannelUpdate = 0x43,
    /// Client: delete a channel and its log.
    ChannelDelete = 0x44,
    /// Client: an administrative command (instances, keys, users, groups) as JSON.
    Admin = 0x50,
    /// Server: the negotiated version.
    HelloOk = 0x81,
    /// Server: authentication succeeded.
    AuthOk = 0x82,
    /// Server: reply to `Ping`.
    Pong = 0x83,
    /// Server: success without data (e.g. `ChannelDelete`).
    Ok = 0x84,
    /// Server: ids assigned to a `Publish`.
    PublishAck = 0x90,
    /// Server: a subscription started.
    Subscribed = 0xA0,
    /// Server: a subscription ended; no delivery for it follows.
    Unsubscribed = 0xA1,
    /// Server: a page of history records.
    HistoryPage = 0xB0,
    /// Server: one record (reply to `Fetch`).
    Message = 0xB1,
    /// Server: one channel (JSON).
    Channel = 0xC0,
    /// Server: a list of channels (JSON array).
    Channels = 0xC1,
    /// Server: the JSON result of an `Admin` command.
    AdminResult = 0xC2,
    /// Server push: records for a subscription.
    Deliver = 0xE0,
    /// Server push: a subscription's next id left retention.
    Gap = 0xE1,
    /// Server push: the server ended a subscription (e.g. channel deleted).
    SubscriptionClosed = 0xE2,
    /// Server push: a crash took back the position a subscription resumed after.
    Truncated = 0xE3,
    /// Server push: a live-only message (never stored) for a subscription.
    Live = 0xE4,
    /// Server: a request failed (request_id echoed), or the connection is
    /// about to be closed (request_id 0).
    Error = 0xFF,
}

/// Every error code. Stable: a retired code is never reused.
///
/// Normative table (with which codes close the connection): `protocol.md`,
/// section "Error codes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame is not valid; the server closes the connection.
    MalformedFrame = 1,
    /// The length prefix exceeds the frame limit; the server closes the connection.
    FrameTooLarge = 2,
    /// No common protocol version; the server closes the connection.
    UnsupportedVersion = 3,
    /// A request arrived before `Hello`.
    HelloRequired = 4,
    /// The opcode is not a request this server knows.
    UnknownOpcode = 5,
    /// A field is missing, out of range or malformed; the request is rejected.
    BadRequest = 6,
    /// A request that needs a key arrived before `Auth`.
    AuthRequired = 10,
    /// The key is unknown, revoked or wrong (one code for all three).
    AuthFailed = 11,
    /// The identity may not do this on this channel.
    PermissionDenied = 12,
    /// No channel by that name.
    ChannelNotFound = 20,
    /// A channel by that name exists already.
    ChannelExists = 21,
    /// The channel is `separate_rooms` and the request names no room.
    RoomRequired = 22,
    /// Custom publish is not allowed on this channel.
    CustomPublishDisabled = 23,
    /// No message with that id is retained.
    MessageNotFound = 24,
    /// A channel or room name is not valid.
    InvalidName = 25,
    /// No instance by that name (or the connection has no instance).
    InstanceNotFound = 26,
    /// An instance by that name exists already.
    InstanceExists = 27,
    /// No key, user or group with that id or name in the instance.
    IdentityNotFound = 28,
    /// A user or group by that name exists already in the instance.
    IdentityExists = 29,
    /// A named limit was reached (subscriptions, channels, connections, ...).
    LimitExceeded = 30,
    /// The subscription id is already in use on this connection.
    SubscriptionExists = 31,
    /// No subscription with that id on this connection.
    UnknownSubscription = 32,
    /// A subscription or history request starts after an id beyond the
    /// channel's head: no such id was ever assigned in this channel. The
    /// message names the head id.
    AheadOfHead = 33,
    /// The connection did not complete `Hello` and `Auth` within
    /// `HANDSHAKE_TIMEOUT_MS`; the server closes the connection.
    HandshakeTimeout = 34,
    /// An edit or delete names a message that was deleted.
    MessageDeleted = 35,
    /// The server cannot allocate log space; retry later.
    StorageFull = 40,
    /// The log failed to sync and refuses writes until restarted.
    StorageFailed = 41,
    /// The server is shutting down; reconnect later.
    ShuttingDown = 42,
    /// An unexpected server error.
    Internal = 50,
}

/// Acknowledgement mode of a publish (`protocol.md`, section
/// "Acknowledgement modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AckMode {
    /// No `PublishAck` (errors are still reported).
    None = 0,
    /// `PublishAck` once the records are appended to the log.
    Append = 1,
    /// `PublishAck` once the records are stored under the durability policy
    /// and synced.
    Durable = 2,
}

/// The message an `Edit` or `Delete` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmendTarget {
    /// By id.
    Id(u64),
    /// By uuid.
    Uuid([u8; 16]),
}

/// Where a subscription starts (`protocol.md`, sections "Subscribe" and
/// "Delivery semantics").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only messages published after the subscription is registered.
    New,
    /// The first message with id greater than this.
    AfterId(u64),
    /// The oldest retained message.
    Earliest,
    /// The first message created at or after this time (µs since the epoch).
    AtTime(u64),
}

/// A parsed frame header (`protocol.md`, section "Framing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The raw opcode byte (may be unknown to this build).
    pub opcode: u8,
    /// The request id.
    pub request_id: u32,
    /// Bytes of body after the 12-byte header.
    pub body_len: usize,
}

/// Why bytes on the wire were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The stable code sent to the peer.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl WireError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} ({}): {}",
            self.code, self.code as u16, self.message
        )
    }
}

impl std::error::Error for WireError {}

/// A client request, borrowing from the frame body. Each variant's body
/// layout is in `protocol.md`, section "Requests and responses".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// Version range the client speaks and its name.
    Hello {
        /// Lowest version the client speaks.
        version_min: u16,
        /// Highest version the client speaks.
        version_max: u16,
        /// Free-form client name for logs.
        client_name: &'a str,
    },
    /// Credentials.
    Auth {
        /// An admin or API key.
        key: &'a str,
        /// An optional user key (empty: none).
        user_key: &'a str,
        /// The instance to work in (empty: the key's own, or `default` for a
        /// server-wide admin key).
        instance: &'a str,
    },
    /// Echo request.
    Ping {
        /// Echoed back in `Pong`.
        data: &'a [u8],
    },
    /// Publish `count` messages; `messages` is `count` × (u32 len, message body).
    Publish {
        /// Target channel.
        channel: &'a str,
        /// When to acknowledge.
        ack: AckMode,
        /// Number of messages.
        count: u32,
        /// Offset of the messages region inside the frame body.
        messages_offset: usize,
    },
    /// Edit (`edit: Some`) or delete (`edit: None`) a message.
    Amend {
        /// Channel name.
        channel: &'a str,
        /// When to acknowledge.
        ack: AckMode,
        /// The message.
        target: AmendTarget,
        /// The new content type and payload (edit), or `None` (delete).
        edit: Option<(u8, &'a [u8])>,
    },
    /// Start a subscription.
    Subscribe {
        /// Client-chosen id, unique on the connection.
        sub_id: u32,
        /// Channel name.
        channel: &'a str,
        /// Room filter (empty: all rooms).
        room: &'a str,
        /// Where to start.
        start: Start,
        /// Deliver only committed records (stored under the durability
        /// policy), never one a crash could take back.
        committed: bool,
    },
    /// End a subscription.
    Unsubscribe {
        /// The id given at `Subscribe`.
        sub_id: u32,
    },
    /// A page of history.
    History {
        /// Channel name.
        channel: &'a str,
        /// Room filter (empty: all rooms).
        room: &'a str,
        /// Page order.
        newest_first: bool,
        /// Only ids greater than this (0: no bound).
        after_id: u64,
        /// Only ids less than this (0: no bound).
        before_id: u64,
        /// Most records (0: the default page size).
        limit: u32,
        /// Raw records (edits and deletions as records of their own)
        /// rather than the current view.
        raw: bool,
    },
    /// One message by id.
    Fetch {
        /// Channel name.
        channel: &'a str,
        /// Message id.
        id: u64,
        /// The raw record rather than the current version.
        raw: bool,
    },
    /// Create a channel from a JSON object.
    ChannelCreate {
        /// The JSON object (UTF-8).
        json: &'a [u8],
    },
    /// Read one channel.
    ChannelGet {
        /// Channel name.
        name: &'a str,
    },
    /// List channels.
    ChannelList,
    /// Change a channel from a JSON object of the fields to change.
    ChannelUpdate {
        /// Channel name.
        name: &'a str,
        /// The JSON object (UTF-8).
        json: &'a [u8],
    },
    /// Delete a channel.
    ChannelDelete {
        /// Channel name.
        name: &'a str,
    },
    /// An administrative command: a JSON object with an `op` key.
    Admin {
        /// The JSON object (UTF-8).
        json: &'a [u8],
    },
}

/// A server frame, borrowing from the frame body (what a client decodes).
/// Body layouts: `protocol.md`, sections "Requests and responses" and
/// "Push frames".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// The negotiated version.
    HelloOk {
        /// The version both sides speak.
        version: u16,
        /// The server's frame limit.
        frame_len_max: u32,
        /// Free-form server name and version.
        server_name: &'a str,
    },
    /// Authenticated.
    AuthOk {
        /// 0 admin, 1 API key, 2 API key + user.
        identity_kind: u8,
        /// The key's id.
        identity_id: u64,
        /// The instance the connection works in (empty: none).
        instance: &'a str,
    },
    /// Echo reply.
    Pong {
        /// The echoed bytes.
        data: &'a [u8],
    },
    /// Success without data.
    Ok,
    /// Ids of a publish: messages not listed in `duplicates` got
    /// `first_id`, `first_id + 1`, ... in order.
    PublishAck {
        /// Messages in the request.
        count: u32,
        /// Id of the first newly appended message (0 when none was new).
        first_id: u64,
        /// (index in the request, original id) of duplicate messages.
        duplicates: Vec<(u32, u64)>,
        /// The uuid of every message in request order (protocol version 2;
        /// empty under version 1).
        uuids: Vec<[u8; 16]>,
    },
    /// A subscription started.
    Subscribed {
        /// The client's id.
        sub_id: u32,
        /// The first id that can be delivered.
        next_id: u64,
        /// The channel's head id when it started.
        head_id: u64,
    },
    /// A subscription ended.
    Unsubscribed {
        /// The client's id.
        sub_id: u32,
    },
    /// A page of records (raw, in the on-disk format).
    HistoryPage {
        /// Records in the page.
        count: u32,
        /// The records, back to back.
        records: &'a [u8],
    },
    /// One record (raw).
    Message {
        /// The record.
        record: &'a [u8],
    },
    /// A channel as JSON.
    Channel {
        /// The JSON object.
        json: &'a [u8],
    },
    /// Channels as a JSON array.
    Channels {
        /// The JSON array.
        json: &'a [u8],
    },
    /// The result of an `Admin` command (JSON).
    AdminResult {
        /// The JSON value.
        json: &'a [u8],
    },
    /// Pushed records of a subscription.
    Deliver {
        /// The subscription.
        sub_id: u32,
        /// Records in the push.
        count: u32,
        /// The records, back to back (on-disk format).
        records: &'a [u8],
    },
    /// A subscription's next id left retention.
    Gap {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription needed next.
        wanted_id: u64,
        /// The oldest available id; delivery continues there.
        oldest_id: u64,
    },
    /// The position a subscription resumed after was taken back by a crash.
    Truncated {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription asked to resume after.
        after_id: u64,
        /// The last id that survived; records after it that the client saw
        /// are gone.
        kept_id: u64,
        /// Where delivery continues.
        next_id: u64,
    },
    /// A live-only message for a subscription: one record with id 0.
    Live {
        /// The subscription.
        sub_id: u32,
        /// The record (on-disk format, id 0).
        record: &'a [u8],
    },
    /// The server ended a subscription.
    SubscriptionClosed {
        /// The subscription.
        sub_id: u32,
        /// Why.
        code: ErrorCode,
        /// Human-readable reason.
        message: &'a str,
    },
    /// A request failed.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Human-readable reason.
        message: &'a str,
    },
}
