//! Every limit in tidewire, as a named constant with its unit.
//!
//! Lengths that arrive from the network or the disk are checked against these
//! before anything is allocated. Relationships between limits are `const`
//! asserts, so an edit that breaks one fails to compile.
//!
//! This module owns numbers only; it never touches sockets, files or formats.

/// Largest frame on the binary protocol, counting every byte after the 4-byte
/// length prefix. Checked before the body is buffered.
pub const FRAME_LEN_MAX: u32 = 1024 * 1024;
/// Smallest valid value of a frame's length prefix: the rest of the header.
pub const FRAME_HEADER_REST_LEN: u32 = 8;
/// Largest payload of one message, in bytes.
pub const PAYLOAD_LEN_MAX: u32 = 1024 * 1024 - 4096;
/// Largest number of messages in one publish frame.
pub const PUBLISH_BATCH_MAX: u32 = 65_536;
/// Longest channel name, in bytes (lower-case slug).
pub const CHANNEL_NAME_LEN_MAX: usize = 64;
/// Longest room name, in bytes (compared lower-cased).
pub const ROOM_LEN_MAX: usize = 128;
/// Longest Data Object class name carried in message metadata, in bytes.
pub const OBJECT_CLASS_LEN_MAX: usize = 64;
/// Longest user name in `pm_users` / `exclude_users`, in bytes.
pub const TARGET_USER_LEN_MAX: usize = 64;
/// Most names in `pm_users`, and separately in `exclude_users`, of one message.
pub const TARGET_USERS_MAX: usize = 200;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 64;
/// Longest key (API, admin or user) accepted in an authentication request, in bytes.
pub const KEY_LEN_MAX: usize = 128;
/// Longest instance name, in bytes (lower-case slug, like channel names).
pub const INSTANCE_NAME_LEN_MAX: usize = 64;
/// Longest user name, in bytes (user names are what `pm_users` and
/// `exclude_users` name, so the two limits are one).
pub const USERNAME_LEN_MAX: usize = TARGET_USER_LEN_MAX;
/// Longest group name, in bytes.
pub const GROUP_NAME_LEN_MAX: usize = 64;
/// Longest description of an instance, key or group, in bytes.
pub const IDENTITY_DESCRIPTION_LEN_MAX: usize = 1024;
/// Longest JSON body of an administrative request, in bytes.
pub const ADMIN_JSON_LEN_MAX: usize = 64 * 1024;
/// Largest message body (action byte to the end of the payload) in a
/// publish, in bytes. Below the frame limit by enough that the record built
/// from it (24 bytes of header, up to 16 of author) still fits one `Deliver`,
/// `HistoryPage` or `Message` frame.
pub const MESSAGE_BODY_LEN_MAX: u32 = FRAME_LEN_MAX - 1024;
/// Longest client name in `Hello`, in bytes (free-form text for logs).
pub const CLIENT_NAME_LEN_MAX: usize = 256;
/// Longest server name in `HelloOk`, in bytes (free-form text).
pub const SERVER_NAME_LEN_MAX: usize = 256;
/// Longest `Ping` / `Pong` data, in bytes.
pub const PING_DATA_LEN_MAX: usize = 256;
/// Longest message text of an `Error` or `SubscriptionClosed` frame, in bytes;
/// longer texts are cut at a character boundary when encoded.
pub const ERROR_MESSAGE_LEN_MAX: usize = 1024;
/// Largest history page a client may ask for, in messages.
pub const HISTORY_PAGE_MAX: u32 = 1000;
/// History page size when the request asks for 0.
pub const HISTORY_PAGE_DEFAULT: u32 = 100;

/// Most concurrent client connections per server (all io threads together).
pub const CONNECTIONS_MAX: usize = 100_000;
/// Most subscriptions one connection may hold at once.
pub const SUBSCRIPTIONS_PER_CONNECTION_MAX: usize = 1024;
/// Most io threads a configuration may ask for.
pub const IO_THREADS_MAX: usize = 1024;
/// Most channels per server (all instances together); a hard cap.
pub const CHANNELS_MAX: usize = 100_000;

/// Default and hard cap of the number of instances per server.
pub const INSTANCES_MAX_DEFAULT: usize = 1_000;
/// Hard cap of the configurable number of instances (ids are u32).
pub const INSTANCES_CAP: usize = 100_000;
/// Default number of channels per instance.
pub const CHANNELS_PER_INSTANCE_MAX_DEFAULT: usize = 10_000;
/// Default number of admin keys per server (all instances together).
pub const ADMIN_KEYS_MAX_DEFAULT: usize = 1_000;
/// Default number of API keys per instance.
pub const API_KEYS_PER_INSTANCE_MAX_DEFAULT: usize = 1_000;
/// Default number of users per instance.
pub const USERS_PER_INSTANCE_MAX_DEFAULT: usize = 10_000;
/// Default number of groups per instance.
pub const GROUPS_PER_INSTANCE_MAX_DEFAULT: usize = 1_000;
/// Default number of members per group.
pub const MEMBERS_PER_GROUP_MAX_DEFAULT: usize = 10_000;
/// Hard cap of every configurable identity count above (keys, users,
/// groups, members): it bounds the size of one instance's snapshot.
pub const IDENTITIES_CAP: usize = 1_000_000;
const _: () = assert!(INSTANCES_MAX_DEFAULT <= INSTANCES_CAP);
const _: () = assert!(CHANNELS_PER_INSTANCE_MAX_DEFAULT <= CHANNELS_MAX);
const _: () = assert!(USERS_PER_INSTANCE_MAX_DEFAULT <= IDENTITIES_CAP);
const _: () = assert!(MEMBERS_PER_GROUP_MAX_DEFAULT <= IDENTITIES_CAP);
const _: () = assert!(INSTANCE_NAME_LEN_MAX <= u16::MAX as usize);
/// Read buffer of one connection, in bytes, when it holds a partial frame:
/// one maximal frame plus its length prefix.
pub const CONNECTION_READ_BUFFER_MAX: usize = FRAME_LEN_MAX as usize + 4;
/// Pending outbound bytes of one connection at which the server stops adding
/// deliveries (subscriber cursors pause) and stops reading its requests.
pub const CONNECTION_WRITE_BUFFER_HIGH: usize = 256 * 1024;
/// Bytes one subscription may copy from the log per io wake-up.
pub const DELIVERY_CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Live-only records a channel keeps for io threads that have not looked at
/// them yet (older ones are dropped: their subscribers were not live).
pub const LIVE_RING_RECORDS_MAX: usize = 4096;
/// Bytes of live-only records a channel keeps (as `LIVE_RING_RECORDS_MAX`).
pub const LIVE_RING_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Channelstream users known at once (Channelstream: unbounded).
pub const CS_USERS_MAX: usize = 100_000;
/// Channelstream connections of one user.
pub const CS_CONNECTIONS_PER_USER_MAX: usize = 1_000;
/// Channelstream channels one connection is in.
pub const CS_CHANNELS_PER_CONNECTION_MAX: usize = 1_000;
/// Channelstream channels of the instance.
pub const CS_CHANNELS_MAX: usize = 100_000;
/// Bytes of one Channelstream user's state, as JSON.
pub const CS_STATE_BYTES_MAX: usize = 16 * 1024;
/// Channelstream `/listen` requests parked on one io thread; more are
/// answered `[]` at once.
pub const CS_LISTENS_PARKED_MAX: usize = 100_000;
/// Largest frame a Channelstream WebSocket client may send, in bytes (its
/// content is not read: clients only send heartbeats); a larger one closes
/// the socket with 1009.
pub const CS_WS_FRAME_MAX: u64 = 64 * 1024;
/// Frames handled per connection per readable event before yielding to others.
pub const FRAMES_PER_WAKE_MAX: usize = 256;
/// Entries in the append queue between io threads and the log writer.
pub const APPEND_QUEUE_LEN: usize = 4096;
/// Entries in each io thread's completion queue.
pub const COMPLETION_QUEUE_LEN: usize = 65_536;
/// Append requests the writer takes per batch (one group commit per batch).
pub const WRITER_BATCH_MAX: usize = 1024;

/// Default size of a segment file, in bytes.
pub const SEGMENT_SIZE_DEFAULT: u64 = 256 * 1024 * 1024;
/// Smallest configurable segment size, in bytes.
pub const SEGMENT_SIZE_MIN: u64 = 64 * 1024;
/// Largest configurable segment size, in bytes (offsets are u32 in indexes).
pub const SEGMENT_SIZE_MAX: u64 = 4 * 1024 * 1024 * 1024 - 1;
/// Default age at which the active segment is rotated, in microseconds (24 h).
pub const SEGMENT_AGE_US_DEFAULT: u64 = 24 * 3600 * 1_000_000;
/// Default retention of a message after its `created_at`, in microseconds (24 h).
pub const RETENTION_US_DEFAULT: u64 = 24 * 3600 * 1_000_000;
/// Bytes of log between two sparse index entries; bounds the recovery scan.
pub const INDEX_INTERVAL_BYTES: u64 = 64 * 1024;
/// Bytes a new segment file starts with (header included); it grows as it
/// fills, so a channel's disk use follows its data.
pub const SEGMENT_ALLOC_MIN: u64 = 16 * 1024;
/// Most bytes a segment file grows by at once (each growth at least doubles
/// it up to this step, allocated ahead of the writer with `fallocate`).
pub const SEGMENT_ALLOC_STEP_MAX: u64 = 8 * 1024 * 1024;
/// First and largest number of ids the writer reserves on stable storage
/// ahead of what it publishes (each reservation doubles, up to the largest).
/// After a crash a log continues above its reservation, so ids a reader may
/// have seen are never given again; the ids skipped form a reported hole.
pub const ID_RESERVATION_MIN: u64 = 1024;
/// See [`ID_RESERVATION_MIN`].
pub const ID_RESERVATION_MAX: u64 = 1 << 24;
/// Crash holes a log keeps in memory to answer resuming readers (the oldest
/// are dropped first).
pub const HOLES_KEPT_MAX: usize = 1024;
/// A log not appended to for this long closes its files (descriptors are
/// opened again by the next append), microseconds.
pub const LOG_IDLE_CLOSE_US: u64 = 10_000_000;
/// Largest metadata snapshot accepted when decoding, in bytes.
pub const SNAPSHOT_LEN_MAX: u64 = 256 * 1024 * 1024;

const _: () = assert!(FRAME_HEADER_REST_LEN < FRAME_LEN_MAX);
const _: () = assert!(PAYLOAD_LEN_MAX < FRAME_LEN_MAX);
const _: () = assert!(SEGMENT_SIZE_MIN <= SEGMENT_SIZE_DEFAULT);
const _: () = assert!(SEGMENT_SIZE_DEFAULT <= SEGMENT_SIZE_MAX);
// A maximal record must fit in the smallest segment... no: it must fit in the
// configured one, which `config` checks; the default must hold one.
const _: () = assert!((FRAME_LEN_MAX as u64) * 2 < SEGMENT_SIZE_DEFAULT);
const _: () = assert!(SEGMENT_ALLOC_MIN <= SEGMENT_SIZE_MIN);
const _: () = assert!(ID_RESERVATION_MIN <= ID_RESERVATION_MAX);
const _: () = assert!(INDEX_INTERVAL_BYTES <= SEGMENT_SIZE_MIN);
const _: () = assert!(DELIVERY_CHUNK_BYTES_MAX <= CONNECTION_WRITE_BUFFER_HIGH);
const _: () = assert!(HISTORY_PAGE_DEFAULT <= HISTORY_PAGE_MAX);

/// Largest frame accepted before `Auth` succeeds, counting every byte after
/// the length prefix: the handshake's frames are small, so a connection
/// that has proved nothing gets no more buffer than this. A larger one is
/// answered `FrameTooLarge` and the connection closed.
pub const FRAME_LEN_UNAUTHENTICATED_MAX: u32 = 4096;
/// Time a binary connection has from its accept to a successful `Auth`
/// (after `Hello`), in milliseconds; then it is sent `HandshakeTimeout` and
/// closed (like nats-server's `auth_timeout`).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Time an HTTP request's head has to arrive, from its first byte (from the
/// accept, for a connection's first request), in milliseconds (like nginx's
/// `client_header_timeout`); then the connection is answered 408 and closed.
pub const HTTP_HEAD_TIMEOUT_MS: u64 = 60_000;
/// Time an HTTP request's body has to arrive, from the end of its head, in
/// milliseconds (like nginx's `client_body_timeout`); then the connection is
/// answered 408 and closed.
pub const HTTP_BODY_TIMEOUT_MS: u64 = 60_000;
// The largest `Hello`, `Auth` and `Ping` fit before authentication:
// header rest, then their fields (u16 lengths before strings).
const _: () = assert!(
    FRAME_HEADER_REST_LEN as usize + 6 + CLIENT_NAME_LEN_MAX
        <= FRAME_LEN_UNAUTHENTICATED_MAX as usize
);
const _: () = assert!(
    FRAME_HEADER_REST_LEN as usize + 6 + 2 * KEY_LEN_MAX + INSTANCE_NAME_LEN_MAX
        <= FRAME_LEN_UNAUTHENTICATED_MAX as usize
);
const _: () = assert!(
    FRAME_HEADER_REST_LEN as usize + PING_DATA_LEN_MAX <= FRAME_LEN_UNAUTHENTICATED_MAX as usize
);
const _: () = assert!(FRAME_LEN_UNAUTHENTICATED_MAX <= FRAME_LEN_MAX);

/// Longest channel description, in bytes.
pub const CHANNEL_DESCRIPTION_LEN_MAX: usize = 4096;
/// Longest per-channel retention, in seconds (30 days).
pub const RETENTION_SECS_MAX: u64 = 30 * 24 * 3600;
/// Bytes of publish frames queued for the log writer across the server.
pub const INFLIGHT_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Publish requests one connection may have waiting for their
/// acknowledgements at once (a connection over it is not read until
/// answers go out). Large enough that one pipelining connection fills a
/// whole group commit while the previous one syncs.
pub const CONNECTION_INFLIGHT_REQUESTS_MAX: usize = 16_384;
/// Most bytes of consecutive publish frames of one connection gathered into
/// one writer request.
pub const COALESCE_BYTES_MAX: usize = 256 * 1024;
// Frame overhead (8) + Deliver header (8) + record header (24) + author (16).
const _: () = assert!(MESSAGE_BODY_LEN_MAX + 8 + 8 + 24 + 16 <= FRAME_LEN_MAX);
// Every wire string carries a u16 length.
const _: () = assert!(CHANNEL_NAME_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(ROOM_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(KEY_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(CLIENT_NAME_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(SERVER_NAME_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(ERROR_MESSAGE_LEN_MAX <= u16::MAX as usize);

/// The configurable tenancy limits (`tidewire serve --config`, table
/// `[limits]`); each defaults to its `*_DEFAULT` constant above and may not
/// exceed its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenancyLimits {
    /// Most instances on the server (cap `INSTANCES_CAP`).
    pub instances_max: usize,
    /// Most channels in one instance (cap `CHANNELS_MAX`).
    pub channels_per_instance_max: usize,
    /// Most admin keys on the server (cap `IDENTITIES_CAP`).
    pub admin_keys_max: usize,
    /// Most API keys in one instance (cap `IDENTITIES_CAP`).
    pub api_keys_per_instance_max: usize,
    /// Most users in one instance (cap `IDENTITIES_CAP`).
    pub users_per_instance_max: usize,
    /// Most groups in one instance (cap `IDENTITIES_CAP`).
    pub groups_per_instance_max: usize,
    /// Most members of one group (cap `IDENTITIES_CAP`).
    pub members_per_group_max: usize,
}

impl Default for TenancyLimits {
    fn default() -> TenancyLimits {
        TenancyLimits {
            instances_max: INSTANCES_MAX_DEFAULT,
            channels_per_instance_max: CHANNELS_PER_INSTANCE_MAX_DEFAULT,
            admin_keys_max: ADMIN_KEYS_MAX_DEFAULT,
            api_keys_per_instance_max: API_KEYS_PER_INSTANCE_MAX_DEFAULT,
            users_per_instance_max: USERS_PER_INSTANCE_MAX_DEFAULT,
            groups_per_instance_max: GROUPS_PER_INSTANCE_MAX_DEFAULT,
            members_per_group_max: MEMBERS_PER_GROUP_MAX_DEFAULT,
        }
    }
}

impl TenancyLimits {
    /// Checks every limit against its cap (each must also be at least 1).
    ///
    /// # Errors
    /// A message naming the first limit out of range.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            ("instances_max", self.instances_max, INSTANCES_CAP),
            (
                "channels_per_instance_max",
                self.channels_per_instance_max,
                CHANNELS_MAX,
            ),
            ("admin_keys_max", self.admin_keys_max, IDENTITIES_CAP),
            (
                "api_keys_per_instance_max",
                self.api_keys_per_instance_max,
                IDENTITIES_CAP,
            ),
            (
                "users_per_instance_max",
                self.users_per_instance_max,
                IDENTITIES_CAP,
            ),
            (
                "groups_per_instance_max",
                self.groups_per_instance_max,
                IDENTITIES_CAP,
            ),
            (
                "members_per_group_max",
                self.members_per_group_max,
                IDENTITIES_CAP,
            ),
        ];
        for (name, value, cap) in checks {
            if value == 0 || value > cap {
                return Err(format!("{name} must be 1..={cap}, not {value}"));
            }
        }
        Ok(())
    }
}

/// Longest HTTP request head (request line, headers and the blank line), in
/// bytes. A connection that has sent this much without ending its head is
/// answered 431 and closed.
pub const HTTP_HEAD_LEN_MAX: usize = 16 * 1024;
/// Most header fields in one HTTP request; more is answered 431.
pub const HTTP_HEADERS_MAX: usize = 64;
/// Largest HTTP request body, in bytes: Syncano's `CHANNEL_PAYLOAD_LIMIT`,
/// checked on `Content-Length` before the body is buffered (413).
pub const HTTP_BODY_LEN_MAX: usize = 65_536;
/// Most query parameters (and separately form fields) parsed from one
/// request; more is answered 400.
pub const HTTP_QUERY_PARAMS_MAX: usize = 128;
/// Most segments in an HTTP request path; longer paths are not routed (404).
pub const HTTP_PATH_SEGMENTS_MAX: usize = 16;
/// Deepest nesting of `[` and `{` in a JSON request body; deeper bodies are
/// answered 400 before they reach the JSON parser.
pub const HTTP_JSON_DEPTH_MAX: usize = 64;
/// Syncano history page size when the request names none, in messages.
pub const SYNCANO_PAGE_SIZE_DEFAULT: u32 = 100;
/// Default number of long polls parked at once, server-wide (configurable:
/// `http_parked_polls_max`, at most `CONNECTIONS_MAX`); a poll beyond it is
/// answered 503 with `Retry-After`.
pub const HTTP_PARKED_POLLS_MAX_DEFAULT: usize = 100_000;
/// Default time a long poll is held before it is answered 204, in seconds
/// (Syncano's `CHANNEL_POLL_TIMEOUT`; configurable: `http_poll_timeout_secs`).
pub const HTTP_POLL_TIMEOUT_SECS_DEFAULT: u64 = 300;
/// Longest configurable long-poll timeout, in seconds.
pub const HTTP_POLL_TIMEOUT_SECS_MAX: u64 = 3600;
/// Bytes of records one HTTP history page may copy out of the log; a page
/// of large messages ends early (with a `next` link) rather than grow past it.
pub const HTTP_HISTORY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// `Retry-After` of a poll refused because the parked-poll table is full, in seconds.
pub const HTTP_RETRY_AFTER_SECS: u32 = 1;
/// Largest Syncano history page, in messages; larger requests are cut to it.
pub const SYNCANO_PAGE_SIZE_MAX: u32 = 100;

// A whole request (head and body) fits one connection read buffer.
const _: () = assert!(HTTP_HEAD_LEN_MAX + HTTP_BODY_LEN_MAX <= CONNECTION_READ_BUFFER_MAX);
// A published HTTP body always fits one message body.
const _: () = assert!(HTTP_BODY_LEN_MAX <= MESSAGE_BODY_LEN_MAX as usize);
const _: () = assert!(HTTP_BODY_LEN_MAX <= ADMIN_JSON_LEN_MAX);
const _: () = assert!(SYNCANO_PAGE_SIZE_DEFAULT <= SYNCANO_PAGE_SIZE_MAX);
// A history plan reads one record more than a page to learn whether more exist.
const _: () = assert!(SYNCANO_PAGE_SIZE_MAX < HISTORY_PAGE_MAX);
// serde_json refuses nesting past 128 itself; ours must fire first.
const _: () = assert!(HTTP_JSON_DEPTH_MAX < 128);
const _: () = assert!(HTTP_PARKED_POLLS_MAX_DEFAULT <= CONNECTIONS_MAX);
const _: () = assert!(HTTP_POLL_TIMEOUT_SECS_DEFAULT <= HTTP_POLL_TIMEOUT_SECS_MAX);
