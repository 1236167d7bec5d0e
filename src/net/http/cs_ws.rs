//! Channelstream's WebSocket transport, `/ws?conn_id=`: the upgrade, then
//! one text frame per event (`[event]`, as Channelstream sends them), `[]`
//! heartbeats, and from the client only activity, pings and the close.
//!
//! Framing is tungstenite's (frame headers parsed from and written into the
//! connection's own buffers); the io thread drives it like any connection,
//! and a client that reads slowly lags in the log, never in memory: events
//! are taken from the log only while its write buffer has room.

use std::io::Cursor;

use serde_json::Value;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::broker::ChannelstreamSettings;
use crate::channelstream::{self as cs};
use crate::http::request::Request;
use crate::net::IoThread;

/// Time between `[]` heartbeats (Channelstream: 5 s), µs.
const HEARTBEAT_US: u64 = 5_000_000;

/// A connection that upgraded to a Channelstream WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsSocket {
    /// The Channelstream connection it carries.
    pub conn_id: [u8; 16],
    /// When a frame last went out, µs.
    pub sent_us: u64,
    /// Its log moved while its write buffer was full: look again when it drains.
    pub behind: bool,
}

/// Appends one unmasked server frame.
fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        is_final: true,
        opcode,
        ..FrameHeader::default()
    };
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code`.
fn write_close(out: &mut Vec<u8>, code: u16) {
    write_frame(out, OpCode::Control(Control::Close), &code.to_be_bytes());
}

impl IoThread {
    /// `GET /ws`: the upgrade. `false` when the request is not one (the
    /// caller answers it).
    pub(super) fn cs_ws_upgrade(
        &mut self,
        index: usize,
        req: &Request,
        settings: &ChannelstreamSettings,
    ) -> Result<(), (u16, Value)> {
        let upgrade = req
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let Some(key) = req.header("sec-websocket-key").filter(|_| upgrade) else {
            return Err((
                400,
                serde_json::json!({"message": "a WebSocket upgrade is expected"}),
            ));
        };
        let Some(conn_id) = req.query_raw("conn_id").and_then(cs::schema::parse_uuid) else {
            return Err((422, serde_json::json!(["Wrong UUID format"])));
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let known = self
            .broker
            .cs_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .conn_user(conn_id)
            .is_some();
        let now = self.broker.clock().now_us();
        let Some(conn) = self.conns.get_mut(index) else {
            return Ok(());
        };
        conn.wbuf.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        );
        if !known {
            // As Channelstream: an unknown connection is closed at once.
            write_close(&mut conn.wbuf, 1000);
            conn.closing = true;
            self.mark_dirty(index);
            return Ok(());
        }
        conn.cs_socket = Some(CsSocket {
            conn_id,
            sent_us: now,
            behind: false,
        });
        self.cs_sockets.insert(index);
        // What happened since the connection was made or last read.
        if let Some(events) = self.cs_collect_for(settings, conn_id, true) {
            self.send_events(index, &events);
        }
        self.mark_dirty(index);
        Ok(())
    }

    fn send_events(&mut self, index: usize, events: &[Value]) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        for e in events {
            let frame = cs::json::to_vec(&Value::Array(vec![e.clone()]));
            write_frame(&mut conn.wbuf, OpCode::Data(Data::Text), &frame);
        }
        if let Some(s) = conn.cs_socket.as_mut() {
            s.sent_us = self.broker.clock().now_us();
        }
    }

    /// Reads the client's frames: any data counts as activity, a ping gets
    /// its pong, a close its close; an oversized frame closes with 1009.
    /// Returns true when the caller may read more from the socket.
    pub(super) fn handle_ws(&mut self, index: usize) -> bool {
        let now = self.broker.clock().now_us();
        let Some(conn) = self.conns.get_mut(index) else {
            return false;
        };
        let Some(socket) = conn.cs_socket else {
            return false;
        };
        let mut active = false;
        loop {
            let input = &conn.rbuf[conn.rstart..conn.rend];
            let mut cursor = Cursor::new(input);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    conn.reserve_frame(16);
                    break;
                }
                Err(_) => {
                    write_close(&mut conn.wbuf, 1002);
                    conn.closing = true;
                    break;
                }
            };
            if len > crate::limits::CS_WS_FRAME_MAX {
                write_close(&mut conn.wbuf, 1009);
                conn.closing = true;
                break;
            }
            let head = cursor.position() as usize;
            let total = head + len as usize;
            if input.len() < total {
                conn.reserve_frame(total);
                break;
            }
            let mut payload = input[head..total].to_vec();
            if let Some(mask) = header.mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            conn.rstart += total;
            match header.opcode {
                OpCode::Control(Control::Ping) => {
                    write_frame(&mut conn.wbuf, OpCode::Control(Control::Pong), &payload);
                }
                OpCode::Control(Control::Close) => {
                    let code = payload
                        .get(..2)
                        .map_or(1000, |c| u16::from_be_bytes([c[0], c[1]]));
                    write_close(&mut conn.wbuf, if code == 1005 { 1000 } else { code });
                    conn.closing = true;
                    break;
                }
                OpCode::Control(_) => {}
                OpCode::Data(_) => active = true,
            }
        }
        if active {
            self.broker
                .cs_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .touch(socket.conn_id, now);
        }
        self.mark_dirty(index);
        self.conns.get(index).is_some_and(|c| !c.closing)
    }

    /// Sends every open socket of this thread what its channels got (while
    /// its write buffer has room), and a `[]` heartbeat to those that sent
    /// nothing for [`HEARTBEAT_US`]; an open socket keeps its connection
    /// alive, as in Channelstream.
    pub(super) fn pump_cs_sockets(&mut self) {
        if self.cs_sockets.is_empty() {
            return;
        }
        let Some(settings) = self.broker.channelstream.clone() else {
            return;
        };
        let now = self.broker.clock().now_us();
        // The logs moved only if the writer published since the last look.
        let batches = self
            .broker
            .batches
            .load(std::sync::atomic::Ordering::Acquire);
        let moved = batches != self.cs_seen_batches;
        self.cs_seen_batches = batches;
        let sockets: Vec<usize> = self.cs_sockets.iter().copied().collect();
        for index in sockets {
            let Some(conn) = self.conns.get(index) else {
                self.cs_sockets.remove(&index);
                continue;
            };
            let Some(socket) = conn.cs_socket.filter(|_| !conn.closing) else {
                continue;
            };
            if conn.out_full() {
                // It reads slowly: what waits stays in the log.
                if moved {
                    self.cs_mark_behind(index);
                }
                continue;
            }
            let heartbeat_due = now.saturating_sub(socket.sent_us) >= HEARTBEAT_US;
            if !moved && !heartbeat_due && !socket.behind {
                continue;
            }
            if let Some(s) = self.conns.get_mut(index).and_then(|c| c.cs_socket.as_mut()) {
                s.behind = false;
            }
            match self.cs_collect_for(&settings, socket.conn_id, false) {
                Some(events) if !events.is_empty() => {
                    self.send_events(index, &events);
                    // There may be more than one pass took: look again.
                    self.cs_mark_behind(index);
                }
                Some(_) if now.saturating_sub(socket.sent_us) >= HEARTBEAT_US => {
                    if let Some(conn) = self.conns.get_mut(index) {
                        write_frame(&mut conn.wbuf, OpCode::Data(Data::Text), b"[]");
                        if let Some(s) = conn.cs_socket.as_mut() {
                            s.sent_us = now;
                        }
                    }
                }
                Some(_) => continue,
                // The connection was disconnected or collected: as in
                // Channelstream, the socket is closed.
                None => {
                    if let Some(conn) = self.conns.get_mut(index) {
                        write_close(&mut conn.wbuf, 1000);
                        conn.closing = true;
                    }
                }
            }
            self.mark_dirty(index);
        }
    }

    fn cs_mark_behind(&mut self, index: usize) {
        if let Some(s) = self.conns.get_mut(index).and_then(|c| c.cs_socket.as_mut()) {
            s.behind = true;
        }
    }

    /// A socket's connection is gone: its Channelstream connection leaves
    /// its channels (Channelstream collects it within a second).
    pub(in crate::net) fn cs_socket_closed(&mut self, index: usize) {
        if !self.cs_sockets.remove(&index) {
            return;
        }
        let Some(socket) = self.conns.get(index).and_then(|c| c.cs_socket) else {
            return;
        };
        let Some(settings) = self.broker.channelstream.clone() else {
            return;
        };
        let now = self.broker.clock().now_us();
        let (_, events) = self
            .broker
            .cs_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .disconnect(socket.conn_id, now);
        if let Some(inst) = self.broker.instance(&settings.instance) {
            for e in events {
                self.cs_store_event(&inst, e);
            }
        }
    }
}
