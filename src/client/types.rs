//! The plain data a client is configured with and hands back: connect
//! options, the handshake's outcome, acknowledgements, subscriptions,
//! events and history queries.

use super::*;

/// How to connect and authenticate.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port` of the binary protocol listener.
    pub addr: String,
    /// An admin or API key.
    pub key: String,
    /// A user key (empty: none).
    pub user_key: String,
    /// The instance to work in (empty: the key's own, or `default` for a
    /// server-wide admin key).
    pub instance: String,
    /// Bound on the TCP connect (None: the system's).
    pub connect_timeout: Option<Duration>,
    /// Bound on waiting for any response, and on a blocked write (None: wait forever).
    pub read_timeout: Option<Duration>,
    /// Most pipelined publishes awaiting an acknowledgement before a send
    /// waits for one (at least 1).
    pub max_in_flight: usize,
}

impl ConnectOptions {
    /// Options for `addr` and `key`, no user key, 10 s connect timeout,
    /// 30 s read timeout.
    pub fn new(addr: impl Into<String>, key: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            addr: addr.into(),
            key: key.into(),
            user_key: String::new(),
            instance: String::new(),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(30)),
            max_in_flight: MAX_IN_FLIGHT_DEFAULT,
        }
    }
}

/// What the server said during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The negotiated protocol version.
    pub version: u16,
    /// The server's frame limit, in bytes after the length prefix.
    pub frame_len_max: u32,
    /// The server's name and version.
    pub server_name: String,
    /// 0 admin, 1 API key, 2 API key + user.
    pub identity_kind: u8,
    /// The key's id.
    pub identity_id: u64,
    /// The instance the connection works in (empty: none).
    pub instance: String,
}

/// The acknowledgement of one `Publish` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAckInfo {
    /// The request id [`Client::send_publish`] returned.
    pub request_id: u32,
    /// Messages in the request.
    pub count: u32,
    /// Id of the first newly appended message (0 when none was new).
    pub first_id: u64,
    /// (index in the request, original id) of messages that were duplicates
    /// of an earlier publish with the same idempotency key.
    pub duplicates: Vec<(u32, u64)>,
    /// The uuid of every message in request order (the one its publisher
    /// gave, or the one the server assigned); empty when the server speaks
    /// protocol version 1. For an edit or delete: the changed message's.
    pub uuids: Vec<[u8; 16]>,
}

impl PublishAckInfo {
    /// The id of every message of the request, in request order: duplicates
    /// get their original id, the others `first_id`, `first_id + 1`, ...
    /// (live-only messages, which get no id: 0)
    pub fn ids(&self) -> Vec<u64> {
        let mut dups = self.duplicates.clone();
        dups.sort_unstable_by_key(|d| d.0);
        let mut dups = dups.into_iter().peekable();
        let mut next = self.first_id;
        let mut out = Vec::with_capacity(self.count as usize);
        for index in 0..self.count {
            match dups.next_if(|d| d.0 == index) {
                Some((_, original)) => out.push(original),
                None if self.first_id == 0 => out.push(0),
                None => {
                    out.push(next);
                    next = next.saturating_add(1);
                }
            }
        }
        out
    }

    /// Messages of the request that were newly appended.
    pub fn new_count(&self) -> u32 {
        let dups = u32::try_from(self.duplicates.len()).unwrap_or(u32::MAX);
        self.count.saturating_sub(dups)
    }
}

/// A subscription as the server registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The id this client chose; every event names it.
    pub sub_id: u32,
    /// The first id that can be delivered.
    pub next_id: u64,
    /// The channel's head id when it started.
    pub head_id: u64,
}

/// Something that happened to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message, in id order.
    Message {
        /// The subscription.
        sub_id: u32,
        /// The message.
        message: Message,
    },
    /// A live-only message (never stored, id 0, not resumable): sent to
    /// the subscription because it was live when the message was published.
    Live {
        /// The subscription.
        sub_id: u32,
        /// The message (its `id` is 0).
        message: Message,
    },
    /// The subscription's next id left retention; delivery continues at `oldest_id`.
    Gap {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription needed next.
        wanted_id: u64,
        /// The oldest available id.
        oldest_id: u64,
    },
    /// The subscription resumed after an id a crash took back: records
    /// after `kept_id` that were seen before the crash are gone (no record
    /// will ever have their ids); delivery continues at `next_id`.
    Truncated {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription resumed after.
        after_id: u64,
        /// The last id that survived the crash.
        kept_id: u64,
        /// Where delivery continues.
        next_id: u64,
    },
    /// The server ended the subscription; nothing more follows for it.
    Closed {
        /// The subscription.
        sub_id: u32,
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
}

impl Event {
    /// The subscription the event belongs to.
    pub fn sub_id(&self) -> u32 {
        match self {
            Event::Message { sub_id, .. }
            | Event::Live { sub_id, .. }
            | Event::Gap { sub_id, .. }
            | Event::Truncated { sub_id, .. }
            | Event::Closed { sub_id, .. } => *sub_id,
        }
    }
}

/// What [`Client::next_raw`] handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawNext {
    /// This many records were passed to the callback (one `Deliver` push).
    Records(u32),
    /// A live-only message (see [`Event::Live`]); not passed to the callback.
    Live {
        /// The subscription.
        sub_id: u32,
        /// The message.
        message: Message,
    },
    /// A subscription's next id left retention; delivery continues at `oldest_id`.
    Gap {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription needed next.
        wanted_id: u64,
        /// The oldest available id.
        oldest_id: u64,
    },
    /// A crash took back the position the subscription resumed after (see
    /// [`Event::Truncated`]).
    Truncated {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription resumed after.
        after_id: u64,
        /// The last id that survived the crash.
        kept_id: u64,
        /// Where delivery continues.
        next_id: u64,
    },
    /// The server ended the subscription; nothing more follows for it.
    Closed {
        /// The subscription.
        sub_id: u32,
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
}

impl RawNext {
    /// The raw form of a queued event; `None` for a message.
    pub(super) fn from_event(event: Event) -> Option<RawNext> {
        match event {
            Event::Message { .. } => None,
            Event::Live { sub_id, message } => Some(RawNext::Live { sub_id, message }),
            Event::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            } => Some(RawNext::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            }),
            Event::Truncated {
                sub_id,
                after_id,
                kept_id,
                next_id,
            } => Some(RawNext::Truncated {
                sub_id,
                after_id,
                kept_id,
                next_id,
            }),
            Event::Closed {
                sub_id,
                code,
                message,
            } => Some(RawNext::Closed {
                sub_id,
                code,
                message,
            }),
        }
    }
}

/// A page of history to read. The default is the newest page of the
/// server's default size, all rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only this room (required on `separate_rooms` channels).
    pub room: Option<String>,
    /// Newest message first (otherwise oldest first).
    pub newest_first: bool,
    /// Only ids greater than this (0: no bound).
    pub after_id: u64,
    /// Only ids less than this (0: no bound).
    pub before_id: u64,
    /// Most messages (0: the server's default page size; at most
    /// `limits::HISTORY_PAGE_MAX`).
    pub limit: u32,
    /// The raw records (edits and deletions as records of their own, as
    /// subscribers get them) rather than the current view.
    pub raw: bool,
}

impl Default for HistoryQuery {
    fn default() -> HistoryQuery {
        HistoryQuery {
            room: None,
            newest_first: true,
            after_id: 0,
            before_id: 0,
            limit: 0,
            raw: false,
        }
    }
}
