//! Tests of the codec: round trips of every frame, then (in `rejects`)
//! every way bytes can be refused, truncated or random.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

mod rejects;

use super::codec::FRAME_TOTAL_MAX;
use super::*;
use crate::limits;
use crate::storage::record::{self, encode_body, write_record, Author, MessageFields};

/// Splits one whole frame into its header and body, asserting it is whole.
fn split(frame: &[u8]) -> (FrameHeader, &[u8]) {
    let h = decode_header(frame).unwrap().expect("whole header");
    assert_eq!(
        frame.len(),
        FRAME_HEADER_LEN + h.body_len,
        "one whole frame"
    );
    (h, &frame[FRAME_HEADER_LEN..])
}

fn req_frame(id: u32, req: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(&mut out, id, req);
    out
}

fn resp_frame(id: u32, resp: &Response<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_response(&mut out, id, resp);
    out
}

fn a_record(id: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    encode_body(&mut body, &MessageFields::default(), payload);
    let mut dst = vec![0u8; record::record_len(Author::Admin(1), body.len())];
    write_record(&mut dst, id, 1_700_000_000_000_000, Author::Admin(1), &body);
    dst
}

fn every_request() -> Vec<Request<'static>> {
    vec![
        Request::Hello {
            version_min: 1,
            version_max: 3,
            client_name: "tidewire-py/0.1",
        },
        Request::Auth {
            key: "k".repeat(limits::KEY_LEN_MAX).leak(),
            user_key: "",
            instance: "",
        },
        Request::Auth {
            key: "k",
            user_key: "u",
            instance: "acme",
        },
        Request::Ping { data: b"abc" },
        Request::Ping { data: b"" },
        Request::Subscribe {
            sub_id: 7,
            channel: "news",
            room: "lobby",
            start: Start::AfterId(41),
            committed: true,
        },
        Request::Subscribe {
            sub_id: 0,
            channel: "news",
            room: "",
            start: Start::New,
            committed: false,
        },
        Request::Subscribe {
            sub_id: u32::MAX,
            channel: "n",
            room: "",
            start: Start::Earliest,
            committed: false,
        },
        Request::Subscribe {
            sub_id: 1,
            channel: "n",
            room: "",
            start: Start::AtTime(1_700_000_000_000_000),
            committed: false,
        },
        Request::Unsubscribe { sub_id: 9 },
        Request::History {
            channel: "news",
            room: "",
            newest_first: true,
            after_id: 0,
            before_id: 100,
            limit: limits::HISTORY_PAGE_MAX,
            raw: false,
        },
        Request::History {
            channel: "news",
            room: "r",
            newest_first: false,
            after_id: 5,
            before_id: 0,
            limit: 0,
            raw: true,
        },
        Request::Fetch {
            channel: "news",
            id: 12,
            raw: false,
        },
        Request::Fetch {
            channel: "news",
            id: 13,
            raw: true,
        },
        Request::Amend {
            channel: "news",
            ack: AckMode::Durable,
            target: AmendTarget::Id(12),
            edit: Some((1, b"{}")),
        },
        Request::Amend {
            channel: "news",
            ack: AckMode::Append,
            target: AmendTarget::Uuid([3; 16]),
            edit: None,
        },
        Request::ChannelCreate {
            json: br#"{"name":"news"}"#,
        },
        Request::ChannelGet { name: "news" },
        Request::ChannelList,
        Request::ChannelUpdate {
            name: "news",
            json: br#"{"description":"x"}"#,
        },
        Request::ChannelDelete { name: "news" },
        Request::Admin {
            json: br#"{"op":"instance.list"}"#,
        },
    ]
}

fn every_response(records: &'static [u8]) -> Vec<(u32, Response<'static>)> {
    vec![
        (
            1,
            Response::HelloOk {
                version: 1,
                frame_len_max: limits::FRAME_LEN_MAX,
                server_name: "tidewire 0.1.0",
            },
        ),
        (
            2,
            Response::AuthOk {
                identity_kind: 0,
                identity_id: 1,
                instance: "default",
            },
        ),
        (3, Response::Pong { data: b"abc" }),
        (4, Response::Ok),
        (
            5,
            Response::PublishAck {
                count: 3,
                first_id: 10,
                duplicates: vec![(1, 4)],
                uuids: vec![],
            },
        ),
        (
            5,
            Response::PublishAck {
                count: 1,
                first_id: 0,
                duplicates: vec![(0, 4)],
                uuids: vec![[9; 16]],
            },
        ),
        (
            6,
            Response::Subscribed {
                sub_id: 7,
                next_id: 1,
                head_id: 0,
            },
        ),
        (7, Response::Unsubscribed { sub_id: 7 }),
        (8, Response::HistoryPage { count: 2, records }),
        (
            8,
            Response::HistoryPage {
                count: 0,
                records: b"",
            },
        ),
        (
            9,
            Response::Message {
                record: &records[..a_record(1, b"one").len()],
            },
        ),
        (10, Response::Channel { json: b"{}" }),
        (11, Response::Channels { json: b"[]" }),
        (11, Response::AdminResult { json: b"{}" }),
        (
            0,
            Response::Deliver {
                sub_id: 7,
                count: 2,
                records,
            },
        ),
        (
            0,
            Response::Gap {
                sub_id: 7,
                wanted_id: 3,
                oldest_id: 90,
            },
        ),
        (
            0,
            Response::SubscriptionClosed {
                sub_id: 7,
                code: ErrorCode::ChannelNotFound,
                message: "channel deleted",
            },
        ),
        (
            12,
            Response::Error {
                code: ErrorCode::BadRequest,
                message: "no",
            },
        ),
        (
            0,
            Response::Error {
                code: ErrorCode::MalformedFrame,
                message: "",
            },
        ),
    ]
}

fn two_records() -> &'static [u8] {
    let mut v = a_record(1, b"one");
    v.extend(a_record(2, b"two"));
    v.leak()
}

#[test]
fn every_request_round_trips() {
    for (i, req) in every_request().into_iter().enumerate() {
        let frame = req_frame(i as u32 + 1, &req);
        let (h, body) = split(&frame);
        assert_eq!(h.request_id, i as u32 + 1);
        assert_eq!(decode_request(&h, body).unwrap(), req);
    }
}

#[test]
fn every_response_round_trips() {
    for (id, resp) in every_response(two_records()) {
        let frame = resp_frame(id, &resp);
        let (h, body) = split(&frame);
        assert_eq!(h.request_id, id);
        assert_eq!(decode_response(&h, body).unwrap(), resp, "{resp:?}");
    }
}

#[test]
fn publish_round_trips_through_split_messages_and_check_body() {
    let mut b1 = Vec::new();
    let fields = MessageFields {
        room: Some("Lobby"),
        idempotency_key: Some(b"key-1"),
        ..MessageFields::default()
    };
    encode_body(&mut b1, &fields, b"hello");
    let mut b2 = Vec::new();
    encode_body(&mut b2, &MessageFields::default(), b"");
    let mut out = Vec::new();
    encode_publish(&mut out, 3, "news", AckMode::Durable, &[&b1, &b2]);
    assert_eq!(out.len(), publish_frame_len("news", [b1.len(), b2.len()]));
    let (h, body) = split(&out);
    let Request::Publish {
        channel,
        ack,
        count,
        messages_offset,
    } = decode_request(&h, body).unwrap()
    else {
        panic!("not a publish");
    };
    assert_eq!((channel, ack, count), ("news", AckMode::Durable, 2));
    let region = &body[messages_offset..];
    let ranges = split_messages(region, count).unwrap();
    assert_eq!(ranges.len(), 2);
    let mut first = region[ranges[0].0..ranges[0].1].to_vec();
    assert_eq!(first, b1);
    let info = record::check_body(&mut first).unwrap();
    assert_eq!(info.payload_len, 5);
    assert_eq!(&region[ranges[1].0..ranges[1].1], &b2[..]);
}

#[test]
fn deliver_built_piecewise_equals_encode_response() {
    let recs = two_records();
    let mut out = Vec::new();
    let start = begin_deliver(&mut out, 7);
    out.extend_from_slice(recs);
    assert!(frame_room(&out, start) < FRAME_TOTAL_MAX);
    end_deliver(&mut out, start, 2);
    let expected = resp_frame(
        0,
        &Response::Deliver {
            sub_id: 7,
            count: 2,
            records: recs,
        },
    );
    assert_eq!(out, expected);
    let (h, body) = split(&out);
    let Response::Deliver { records: r, .. } = decode_response(&h, body).unwrap() else {
        panic!("not a deliver");
    };
    let ids: Vec<u64> = records(r).map(|v| v.unwrap().id()).collect();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn an_empty_deliver_is_removed_not_sent() {
    let mut out = vec![9u8];
    let start = begin_deliver(&mut out, 7);
    end_deliver(&mut out, start, 0);
    assert_eq!(out, vec![9u8]);
}

#[test]
fn pushes_always_carry_request_id_zero() {
    let frame = resp_frame(
        55,
        &Response::Gap {
            sub_id: 1,
            wanted_id: 1,
            oldest_id: 2,
        },
    );
    assert_eq!(split(&frame).0.request_id, 0);
}

#[test]
fn long_error_messages_are_cut_at_a_char_boundary() {
    let long = "é".repeat(limits::ERROR_MESSAGE_LEN_MAX);
    let frame = resp_frame(
        1,
        &Response::Error {
            code: ErrorCode::Internal,
            message: &long,
        },
    );
    let (h, body) = split(&frame);
    let Response::Error { message, .. } = decode_response(&h, body).unwrap() else {
        panic!("not an error");
    };
    assert_eq!(message.len(), limits::ERROR_MESSAGE_LEN_MAX);
}

#[test]
fn headers_are_checked_before_the_body_arrives() {
    assert_eq!(decode_header(&[]), Ok(None));
    let too_big = (limits::FRAME_LEN_MAX + 1).to_le_bytes();
    assert_eq!(
        decode_header(&too_big).unwrap_err().code,
        ErrorCode::FrameTooLarge
    );
    assert_eq!(
        decode_header(&7u32.to_le_bytes()).unwrap_err().code,
        ErrorCode::MalformedFrame
    );
    let mut flags = req_frame(1, &Request::ChannelList);
    flags[5] = 1;
    assert_eq!(
        decode_header(&flags).unwrap_err().code,
        ErrorCode::MalformedFrame
    );
    let mut reserved = req_frame(1, &Request::ChannelList);
    reserved[7] = 1;
    assert_eq!(
        decode_header(&reserved).unwrap_err().code,
        ErrorCode::MalformedFrame
    );
    let max = limits::FRAME_LEN_MAX.to_le_bytes();
    let mut ok = max.to_vec();
    ok.extend([0x03, 0, 0, 0, 1, 0, 0, 0]);
    let h = decode_header(&ok).unwrap().unwrap();
    assert_eq!(h.body_len, limits::FRAME_LEN_MAX as usize - 8);
}
