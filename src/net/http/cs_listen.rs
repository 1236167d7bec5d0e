//! Channelstream's long-poll transport, `GET /listen?conn_id=`: the events
//! of the connection's channels (and of its user's messages) since it last
//! read, read from the logs and filtered for its user; parked up to
//! [`LISTEN_WAIT_US`] when there are none.

use serde_json::{json, Value};

use super::{HttpWait, Waiting};
use crate::broker::ChannelstreamSettings;
use crate::channelstream::state::Mark;
use crate::channelstream::{self as cs, render};
use crate::http::request::Request;
use crate::http::response::{write_response, ResponseOptions};
use crate::net::IoThread;
use crate::storage::record::{self, RecordView};
use crate::storage::{Order, View};

/// How long a `/listen` with nothing to send waits (Channelstream's
/// `wake_connections_after`, 5 s).
pub const LISTEN_WAIT_US: u64 = 5_000_000;
/// Most events one `/listen` answer (or WebSocket pass) carries per channel
/// (the rest follow).
const LISTEN_BATCH_MAX: usize = 1000;
/// Bytes of records one `/listen` answer (or WebSocket pass) takes from the
/// logs, about (the rest follow): what a slow reader holds in memory.
const LISTEN_BYTES_MAX: usize = crate::limits::CONNECTION_WRITE_BUFFER_HIGH;

impl IoThread {
    /// `GET /listen`: the answer now, or `None` when the request parked.
    pub(super) fn cs_listen(
        &mut self,
        index: usize,
        req: &Request,
        settings: &ChannelstreamSettings,
        opts: &ResponseOptions,
    ) -> Option<(u16, Value)> {
        let Some(raw) = req.query_raw("conn_id") else {
            return Some((500, json!({"message": "Internal Server Error"})));
        };
        let Some(conn_id) = cs::schema::parse_uuid(raw) else {
            return Some((422, json!(["Wrong UUID format"])));
        };
        let callback = req.query("callback").map(str::to_string);
        let Some(events) = self.cs_collect_for(settings, conn_id, true) else {
            // An unknown connection (Channelstream: Pyramid's 401).
            return Some((
                401,
                json!({"message": "This server could not verify that you are authorized to access the document you requested.", "code": "401 Unauthorized", "title": "Unauthorized"}),
            ));
        };
        if !events.is_empty() {
            self.write_listen(index, &events, callback.as_deref(), opts);
            return None;
        }
        if self.parked.cs.len() >= crate::limits::CS_LISTENS_PARKED_MAX {
            self.write_listen(index, &[], callback.as_deref(), opts);
            return None;
        }
        let deadline_us = self.broker.clock().now_us().saturating_add(LISTEN_WAIT_US);
        let conn = self.conns.get_mut(index)?;
        conn.http_wait = Some(Box::new(HttpWait {
            opts: *opts,
            what: Waiting::CsListen {
                deadline_us,
                callback,
            },
        }));
        let generation = conn.generation;
        self.parked
            .deadlines
            .insert((deadline_us, index, generation));
        self.parked.cs.insert(index, conn_id);
        None
    }

    /// The events for connection `conn_id` since it last read (marking
    /// them read), or `None` when it is unknown (answered 401 here).
    pub(super) fn cs_collect_for(
        &mut self,
        settings: &ChannelstreamSettings,
        conn_id: [u8; 16],
        catchup: bool,
    ) -> Option<Vec<Value>> {
        let inst = self.broker.instance(&settings.instance)?;
        let now = self.broker.clock().now_us();
        let key = self.broker.uuid_key;
        let mut st = self
            .broker
            .cs_state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.touch(conn_id, now);
        let (user, positions) = st.positions(conn_id)?;
        let mut out = Vec::new();
        for (channel, mark) in positions {
            let Some(ch) = self.cs_log(&inst, channel.as_deref()) else {
                continue;
            };
            let reader = ch.reader();
            let committed = reader.committed_id();
            let view = View {
                viewer: Some(Some(user.as_bytes())),
                current: false,
            };
            let mut read = 0usize;
            let mut bytes = 0usize;
            let mut last = mark.after;
            let frame = |raw: &[u8], out: &mut Vec<Value>| {
                if let Ok(v) = RecordView::parse_trusted(raw) {
                    let uuid = v
                        .uuid()
                        .or_else(|| key.assign(ch.id, v.id()))
                        .unwrap_or_default();
                    out.extend(render::frame(&v, channel.as_deref(), uuid, catchup));
                }
            };
            reader.page_upto(
                None,
                Some(mark.after),
                None,
                Order::OldestFirst,
                LISTEN_BATCH_MAX,
                view,
                committed,
                &mut |raw| {
                    read += 1;
                    bytes += raw.len();
                    last = RecordView::parse_trusted(raw).map_or(last, |v| v.id());
                    frame(raw, &mut out);
                    bytes < LISTEN_BYTES_MAX
                },
            );
            // A short page read everything visible up to the committed head.
            let after = if read < LISTEN_BATCH_MAX && bytes < LISTEN_BYTES_MAX {
                committed.max(mark.after)
            } else {
                last
            };
            // Live-only messages published since it last read, for its user.
            let mut live_seq = mark.live_seq;
            for e in reader.live_from(mark.live_seq) {
                if record::visible(&e.record, Some(user.as_bytes())) {
                    frame(&e.record, &mut out);
                }
                live_seq = e.seq + 1;
            }
            st.advance(conn_id, channel.as_deref(), Mark { after, live_seq });
        }
        Some(out)
    }

    fn write_listen(
        &mut self,
        index: usize,
        events: &[Value],
        callback: Option<&str>,
        opts: &ResponseOptions,
    ) {
        let json = cs::json::to_vec(&Value::Array(events.to_vec()));
        let body = match callback {
            Some(cb) => [cb.as_bytes(), b"(", &json, b")"].concat(),
            None => json,
        };
        if let Some(conn) = self.conns.get_mut(index) {
            write_response(&mut conn.wbuf, 200, &[], &body, opts);
            if !opts.keep_alive {
                conn.closing = true;
            }
        }
        self.resume_http(index);
    }

    /// Answers a parked `/listen` with `events` (`[]` at its deadline).
    pub(super) fn answer_cs_listen(&mut self, index: usize, events: Vec<Value>) {
        let callback = self
            .conns
            .get(index)
            .and_then(|c| match &c.http_wait.as_ref()?.what {
                Waiting::CsListen { callback, .. } => callback.clone(),
                _ => None,
            });
        if let Some(mut opts) = self.unpark(index) {
            opts.date_us = Some(self.broker.clock().now_us());
            self.write_listen(index, &events, callback.as_deref(), &opts);
        }
    }

    /// Answers the parked `/listen` requests that have events now, and
    /// sends the open WebSockets theirs.
    pub(super) fn wake_cs_listens(&mut self) {
        self.pump_cs_sockets();
        if self.parked.cs.is_empty() {
            return;
        }
        let Some(settings) = self.broker.channelstream.clone() else {
            return;
        };
        let parked: Vec<(usize, [u8; 16])> = self.parked.cs.iter().map(|(&i, &c)| (i, c)).collect();
        for (index, conn_id) in parked {
            match self.cs_collect_for(&settings, conn_id, false) {
                Some(events) if !events.is_empty() => self.answer_cs_listen(index, events),
                Some(_) => {}
                // The connection is gone (disconnected or collected).
                None => self.answer_cs_listen(index, Vec::new()),
            }
        }
    }
}
