//! Wire-level tests of the client against a scripted fake server on
//! 127.0.0.1:0 that speaks frames through the real codec.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;

use super::*;
use crate::storage::record::{check_body, record_len, write_record, Author, RecordView};
use crate::wire::{decode_request, encode_response, split_messages};

const KEY: &str = "fake-key";

/// The server side of one connection.
struct Peer {
    s: TcpStream,
}

impl Peer {
    fn frame(&mut self) -> (FrameHeader, Vec<u8>) {
        let mut head = [0u8; FRAME_HEADER_LEN];
        self.s.read_exact(&mut head).expect("a frame header");
        let h = decode_header(&head).unwrap().unwrap();
        let mut body = vec![0u8; h.body_len];
        self.s.read_exact(&mut body).expect("a frame body");
        (h, body)
    }

    fn send(&mut self, rid: u32, r: &Response<'_>) {
        let mut out = Vec::new();
        encode_response(&mut out, rid, r);
        self.s.write_all(&out).unwrap();
    }

    fn handshake(&mut self) {
        let (h, body) = self.frame();
        match decode_request(&h, &body).unwrap() {
            Request::Hello { client_name, .. } => {
                assert!(client_name.starts_with("tidewire-rust/"))
            }
            other => panic!("expected Hello, got {other:?}"),
        }
        self.send(
            h.request_id,
            &Response::HelloOk {
                version: 1,
                frame_len_max: limits::FRAME_LEN_MAX,
                server_name: "fake",
            },
        );
        let (h, body) = self.frame();
        match decode_request(&h, &body).unwrap() {
            Request::Auth {
                key,
                user_key,
                instance,
            } => {
                assert_eq!((key, user_key, instance), (KEY, "", ""));
            }
            other => panic!("expected Auth, got {other:?}"),
        }
        self.send(
            h.request_id,
            &Response::AuthOk {
                identity_kind: 0,
                identity_id: 1,
                instance: "default",
            },
        );
    }

    /// Reads a `Publish` and returns (request id, channel, ack, bodies).
    fn publish(&mut self) -> (u32, String, AckMode, Vec<Vec<u8>>) {
        let (h, body) = self.frame();
        match decode_request(&h, &body).unwrap() {
            Request::Publish {
                channel,
                ack,
                count,
                messages_offset,
            } => {
                let region = &body[messages_offset..];
                let bodies = split_messages(region, count)
                    .unwrap()
                    .into_iter()
                    .map(|(s, e)| region[s..e].to_vec())
                    .collect();
                (h.request_id, channel.to_owned(), ack, bodies)
            }
            other => panic!("expected Publish, got {other:?}"),
        }
    }
}

/// Starts a fake server running `script` on its one connection.
fn fake(script: impl FnOnce(&mut Peer) + Send + 'static) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut peer = Peer { s };
        peer.handshake();
        script(&mut peer);
    });
    (addr, handle)
}

fn options(addr: &str) -> ConnectOptions {
    let mut o = ConnectOptions::new(addr, KEY);
    o.read_timeout = Some(Duration::from_secs(10));
    o
}

/// A record with `id` and a text `payload`, as the server stores it.
fn record(id: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    OutgoingMessage::new(payload)
        .encode_body(&mut body)
        .unwrap();
    let mut out = vec![0u8; record_len(Author::Admin(1), body.len())];
    write_record(&mut out, id, id * 1000, Author::Admin(1), &body);
    out
}

fn records(ids: impl IntoIterator<Item = u64>, payload: &[u8]) -> Vec<u8> {
    ids.into_iter().flat_map(|id| record(id, payload)).collect()
}

#[test]
fn publish_fetch_history_and_admin_round_trip_through_the_codec() {
    let (addr, server) = fake(|p| {
        let (rid, channel, ack, mut bodies) = p.publish();
        assert_eq!((channel.as_str(), ack), ("news", AckMode::Durable));
        let info = check_body(&mut bodies[0]).unwrap();
        let (s, e) = info.room.unwrap();
        assert_eq!(&bodies[0][s..e], b"lobby");
        p.send(
            rid,
            &Response::PublishAck {
                count: 1,
                first_id: 7,
                duplicates: vec![],
                uuids: vec![],
            },
        );
        let (h, _) = p.frame();
        let rec = record(7, b"hello");
        p.send(h.request_id, &Response::Message { record: &rec });
        let (h, body) = p.frame();
        match decode_request(&h, &body).unwrap() {
            Request::History {
                newest_first,
                limit,
                after_id,
                ..
            } => assert_eq!((newest_first, limit, after_id), (true, 2, 0)),
            other => panic!("expected History, got {other:?}"),
        }
        let recs = records([9, 8], b"h");
        p.send(
            h.request_id,
            &Response::HistoryPage {
                count: 2,
                records: &recs,
            },
        );
        let (h, body) = p.frame();
        let Request::ChannelCreate { json } = decode_request(&h, &body).unwrap() else {
            panic!("expected ChannelCreate")
        };
        let echoed = json.to_vec();
        p.send(h.request_id, &Response::Channel { json: &echoed });
        let (h, _) = p.frame();
        p.send(
            h.request_id,
            &Response::Error {
                code: ErrorCode::ChannelNotFound,
                message: "no channel gone",
            },
        );
        let (h, body) = p.frame();
        let Request::Ping { data } = decode_request(&h, &body).unwrap() else {
            panic!("expected Ping")
        };
        let data = data.to_vec();
        p.send(h.request_id, &Response::Pong { data: &data });
    });
    let mut c = Client::connect_with(&options(&addr)).unwrap();
    assert_eq!(c.server_info().server_name, "fake");
    let msg = OutgoingMessage::text("hi").room("lobby");
    assert_eq!(c.publish("news", &msg, AckMode::Durable).unwrap(), 7);
    let m = c.fetch("news", 7).unwrap();
    assert_eq!((m.id, m.payload.as_slice()), (7, &b"hello"[..]));
    let q = HistoryQuery {
        limit: 2,
        ..HistoryQuery::default()
    };
    let page = c.history("news", &q).unwrap();
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), vec![9, 8]);
    let fields = serde_json::json!({"name": "news", "type": "default"});
    assert_eq!(c.channel_create(&fields).unwrap(), fields);
    let err = c.channel_delete("gone").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ChannelNotFound));
    assert!(!err.is_connection_lost());
    c.ping().unwrap();
    server.join().unwrap();
}

#[test]
fn pipelined_acks_come_back_in_order_while_pushes_are_queued() {
    let (addr, server) = fake(|p| {
        let (h, body) = p.frame();
        let Request::Subscribe { sub_id, .. } = decode_request(&h, &body).unwrap() else {
            panic!("expected Subscribe")
        };
        p.send(
            h.request_id,
            &Response::Subscribed {
                sub_id,
                next_id: 1,
                head_id: 0,
            },
        );
        let mut rids = Vec::new();
        for _ in 0..4 {
            let (rid, _, _, bodies) = p.publish();
            rids.push((rid, bodies.len()));
        }
        let recs = records([1, 2], b"pushed");
        p.send(
            0,
            &Response::Deliver {
                sub_id,
                count: 2,
                records: &recs,
            },
        );
        p.send(
            rids[0].0,
            &Response::PublishAck {
                count: 1,
                first_id: 1,
                duplicates: vec![],
                uuids: vec![],
            },
        );
        p.send(
            rids[1].0,
            &Response::PublishAck {
                count: 3,
                first_id: 2,
                duplicates: vec![(1, 1)],
                uuids: vec![],
            },
        );
        p.send(
            rids[2].0,
            &Response::Error {
                code: ErrorCode::StorageFull,
                message: "full",
            },
        );
        p.send(
            rids[3].0,
            &Response::PublishAck {
                count: 2,
                first_id: 4,
                duplicates: vec![],
                uuids: vec![],
            },
        );
    });
    let mut c = Client::connect_with(&options(&addr)).unwrap();
    let sub = c.subscribe("news", None, Start::New).unwrap();
    let one = OutgoingMessage::new(b"a");
    let batch = [one.clone(), one.clone().idempotency_key(b"k"), one.clone()];
    let r0 = c.send_publish("news", &one, AckMode::Append).unwrap();
    let r1 = c
        .send_publish_batch("news", &batch, AckMode::Append)
        .unwrap();
    let r2 = c.send_publish("news", &one, AckMode::Append).unwrap();
    let mut body = Vec::new();
    one.encode_body(&mut body).unwrap();
    let r3 = c
        .send_publish_bodies("news", &[&body, &body], AckMode::Append)
        .unwrap();
    assert_eq!(c.acks_pending(), 4);
    let a0 = c.recv_ack().unwrap();
    assert_eq!((a0.request_id, a0.ids()), (r0, vec![1]));
    let a1 = c.recv_ack().unwrap();
    assert_eq!((a1.request_id, a1.ids()), (r1, vec![2, 1, 3]));
    let e2 = c.recv_ack().unwrap_err();
    assert_eq!(e2.code(), Some(ErrorCode::StorageFull));
    let acks = c.wait_acks(1).unwrap();
    assert_eq!((acks[0].request_id, acks[0].ids()), (r3, vec![4, 5]));
    assert_ne!(r2, r3);
    assert!(matches!(c.recv_ack(), Err(ClientError::Invalid(_))));
    for want in [1, 2] {
        match c.next_event(Some(Duration::from_secs(5))).unwrap() {
            Some(Event::Message { sub_id, message }) => {
                assert_eq!((sub_id, message.id), (sub.sub_id, want));
                assert_eq!(message.payload, b"pushed");
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }
    server.join().unwrap();
}

#[test]
fn raw_delivery_hands_over_records_and_reports_gaps_then_times_out() {
    let (addr, server) = fake(|p| {
        let recs = records(1..=3, b"raw");
        p.send(
            0,
            &Response::Deliver {
                sub_id: 4,
                count: 3,
                records: &recs,
            },
        );
        p.send(
            0,
            &Response::Gap {
                sub_id: 4,
                wanted_id: 4,
                oldest_id: 10,
            },
        );
        // Keep the connection open until the client has timed out once.
        let mut rest = [0u8; 1];
        let _ = p.s.read(&mut rest);
    });
    let mut c = Client::connect_with(&options(&addr)).unwrap();
    let mut seen = Vec::new();
    let got = c
        .next_raw(Some(Duration::from_secs(5)), |sub, raw| {
            let (v, _) = RecordView::decode(raw).unwrap().unwrap();
            seen.push((sub, v.id()));
        })
        .unwrap();
    assert_eq!(got, Some(RawNext::Records(3)));
    assert_eq!(seen, vec![(4, 1), (4, 2), (4, 3)]);
    let gap = c.next_raw(Some(Duration::from_secs(5)), |_, _| {}).unwrap();
    assert_eq!(
        gap,
        Some(RawNext::Gap {
            sub_id: 4,
            wanted_id: 4,
            oldest_id: 10
        })
    );
    let none = c.next_event(Some(Duration::from_millis(50))).unwrap();
    assert_eq!(none, None);
    drop(c);
    server.join().unwrap();
}

#[test]
fn a_delivery_larger_than_the_read_buffer_arrives_whole() {
    let payload = vec![b'x'; 120 * 1024];
    let (addr, server) = fake(move |p| {
        let recs = records(1..=8, &payload);
        assert!(recs.len() > READ_BUFFER_LEN);
        p.send(
            0,
            &Response::Deliver {
                sub_id: 1,
                count: 8,
                records: &recs,
            },
        );
        let recs = records(9..=9, b"small");
        p.send(
            0,
            &Response::Deliver {
                sub_id: 1,
                count: 1,
                records: &recs,
            },
        );
    });
    let mut c = Client::connect_with(&options(&addr)).unwrap();
    let ids: Vec<u64> = c
        .events()
        .take(9)
        .map(|e| match e.unwrap() {
            Event::Message { message, .. } => message.id,
            other => panic!("expected a message, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, (1..=9).collect::<Vec<_>>());
    server.join().unwrap();
}

#[test]
fn a_full_in_flight_window_waits_for_an_acknowledgement() {
    let n = 50u64;
    let (addr, server) = fake(move |p| {
        for i in 0..n {
            let (rid, _, _, _) = p.publish();
            p.send(
                rid,
                &Response::PublishAck {
                    count: 1,
                    first_id: i + 1,
                    duplicates: vec![],
                    uuids: vec![],
                },
            );
        }
    });
    let mut o = options(&addr);
    o.max_in_flight = 2;
    let mut c = Client::connect_with(&o).unwrap();
    for _ in 0..n {
        c.send_publish("w", &OutgoingMessage::new(b"m"), AckMode::Append)
            .unwrap();
        assert!(c.inflight.len() < 2);
    }
    let ids: Vec<u64> = (0..n).map(|_| c.recv_ack().unwrap().first_id).collect();
    assert_eq!(ids, (1..=n).collect::<Vec<_>>());
    server.join().unwrap();
}

#[test]
fn a_connection_level_error_and_a_hang_up_are_reported() {
    let (addr, server) = fake(|p| {
        let (h, _) = p.frame();
        assert_eq!(h.opcode, Opcode::Ping as u8);
        p.send(
            0,
            &Response::Error {
                code: ErrorCode::ShuttingDown,
                message: "bye",
            },
        );
    });
    let mut c = Client::connect_with(&options(&addr)).unwrap();
    let err = c.ping().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ShuttingDown));
    assert!(err.is_connection_lost());
    server.join().unwrap();
    assert!(matches!(c.ping(), Err(ClientError::Closed)));
}

#[test]
fn arguments_over_their_limits_are_rejected_before_sending() {
    let (addr, server) = fake(|p| {
        let (h, _) = p.frame();
        assert_eq!(h.opcode, Opcode::Ping as u8);
        p.send(h.request_id, &Response::Pong { data: &[] });
    });
    let mut c = Client::connect_with(&options(&addr)).unwrap();
    let long = "c".repeat(limits::CHANNEL_NAME_LEN_MAX + 1);
    let one = OutgoingMessage::new(b"x");
    assert!(matches!(
        c.publish(&long, &one, AckMode::Append),
        Err(ClientError::Invalid(_))
    ));
    assert!(matches!(
        c.publish_batch("ok", &[], AckMode::Append),
        Err(ClientError::Invalid(_))
    ));
    let big = vec![0u8; 300 * 1024];
    let many = vec![OutgoingMessage::new(&big); 4];
    assert!(matches!(
        c.send_publish_batch("ok", &many, AckMode::Append),
        Err(ClientError::Invalid(_))
    ));
    assert!(matches!(
        c.send_publish_bodies("ok", &[b"ab"], AckMode::None),
        Err(ClientError::Invalid(_))
    ));
    // Nothing reached the server: the pong answers the next request.
    assert!(matches!(c.ping(), Err(ClientError::Protocol(_))));
    server.join().unwrap();
}

#[test]
fn a_zero_timeout_polls_the_socket() {
    let (addr, server) = fake(|p| {
        let (h, body) = p.frame();
        let Request::Ping { data } = decode_request(&h, &body).unwrap() else {
            panic!("expected Ping")
        };
        let data = data.to_vec();
        p.send(h.request_id, &Response::Pong { data: &data });
        p.send(
            0,
            &Response::Gap {
                sub_id: 2,
                wanted_id: 1,
                oldest_id: 3,
            },
        );
        let mut rest = [0u8; 1];
        let _ = p.s.read(&mut rest);
    });
    let mut c = Client::connect_with(&options(&addr)).unwrap();
    assert_eq!(c.next_event(Some(Duration::ZERO)).unwrap(), None);
    // The Gap follows the pong; after the round trip it is on its way.
    c.ping().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let polled = c.next_event(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        polled,
        Some(Event::Gap {
            sub_id: 2,
            wanted_id: 1,
            oldest_id: 3
        })
    );
    assert_eq!(c.next_event(Some(Duration::ZERO)).unwrap(), None);
    drop(c);
    server.join().unwrap();
}
