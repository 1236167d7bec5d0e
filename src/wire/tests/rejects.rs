//! Requests, responses and message regions the codec refuses; truncated
//! and random input.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::*;
use proptest::prelude::*;

fn str_field(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn bad_requests_are_rejected_with_a_field_name() {
    let long_channel = str_field(&[b'a'; limits::CHANNEL_NAME_LEN_MAX + 1]);
    let news = str_field(b"news");
    let empty = str_field(b"");
    let one = 1u32.to_le_bytes();
    let zero8 = 0u64.to_le_bytes();
    let cases: Vec<(u8, Vec<u8>, ErrorCode, &str)> = vec![
        (0x00, vec![], ErrorCode::UnknownOpcode, "opcode"),
        (0x7f, vec![], ErrorCode::UnknownOpcode, "opcode"),
        (0x81, vec![], ErrorCode::UnknownOpcode, "opcode"),
        (0x01, vec![1, 0], ErrorCode::BadRequest, "version_max"),
        (
            0x01,
            cat(&[&[2, 0, 1, 0], &empty]),
            ErrorCode::BadRequest,
            "version_min",
        ),
        (
            0x01,
            cat(&[&[1, 0, 1, 0], &empty, &[0]]),
            ErrorCode::BadRequest,
            "trailing",
        ),
        (
            0x01,
            cat(&[&[1, 0, 1, 0], &str_field(&[0xff])]),
            ErrorCode::BadRequest,
            "UTF-8",
        ),
        (
            0x02,
            cat(&[&str_field(&[b'k'; limits::KEY_LEN_MAX + 1]), &empty]),
            ErrorCode::BadRequest,
            "key",
        ),
        (0x02, news.clone(), ErrorCode::BadRequest, "user_key"),
        (
            0x03,
            vec![0; limits::PING_DATA_LEN_MAX + 1],
            ErrorCode::BadRequest,
            "ping",
        ),
        (
            0x10,
            cat(&[&long_channel, &[1], &one, &[4, 0, 0, 0, 0, 0, 0, 0]]),
            ErrorCode::BadRequest,
            "channel",
        ),
        (
            0x10,
            cat(&[&news, &[3], &one, &[4, 0, 0, 0, 0, 0, 0, 0]]),
            ErrorCode::BadRequest,
            "ack_mode",
        ),
        (
            0x10,
            cat(&[&news, &[1], &0u32.to_le_bytes()]),
            ErrorCode::BadRequest,
            "count",
        ),
        (
            0x10,
            cat(&[&news, &[1], &(limits::PUBLISH_BATCH_MAX + 1).to_le_bytes()]),
            ErrorCode::BadRequest,
            "count",
        ),
        (
            0x10,
            cat(&[&news, &[1], &2u32.to_le_bytes(), &[4, 0, 0, 0, 0, 0, 0, 0]]),
            ErrorCode::BadRequest,
            "too short",
        ),
        (
            0x20,
            cat(&[&one, &news, &empty, &[4], &zero8]),
            ErrorCode::BadRequest,
            "start_kind",
        ),
        (
            0x20,
            cat(&[&one, &news, &empty, &[0]]),
            ErrorCode::BadRequest,
            "start_value",
        ),
        (
            0x20,
            cat(&[
                &one,
                &news,
                &str_field(&[b'r'; limits::ROOM_LEN_MAX + 1]),
                &[0],
                &zero8,
            ]),
            ErrorCode::BadRequest,
            "room",
        ),
        (0x21, vec![1, 0, 0], ErrorCode::BadRequest, "sub_id"),
        (
            0x30,
            cat(&[&news, &empty, &[2], &zero8, &zero8, &one]),
            ErrorCode::BadRequest,
            "order",
        ),
        (
            0x30,
            cat(&[
                &news,
                &empty,
                &[0],
                &zero8,
                &zero8,
                &(limits::HISTORY_PAGE_MAX + 1).to_le_bytes(),
            ]),
            ErrorCode::BadRequest,
            "limit",
        ),
        (0x31, cat(&[&news, &[1, 2, 3]]), ErrorCode::BadRequest, "id"),
        (0x40, vec![], ErrorCode::BadRequest, "empty"),
        (
            0x40,
            vec![b' '; limits::ADMIN_JSON_LEN_MAX + 1],
            ErrorCode::BadRequest,
            "over",
        ),
        (0x41, cat(&[&news, &[0]]), ErrorCode::BadRequest, "trailing"),
        (0x42, vec![0], ErrorCode::BadRequest, "trailing"),
        (0x43, news.clone(), ErrorCode::BadRequest, "empty"),
        (0x44, vec![5, 0, b'a'], ErrorCode::BadRequest, "name"),
    ];
    for (op, body, code, needle) in cases {
        let h = FrameHeader {
            opcode: op,
            request_id: 1,
            body_len: body.len(),
        };
        let err = decode_request(&h, &body).expect_err(&format!("{op:#x} {body:?}"));
        assert_eq!(err.code, code, "{op:#x}: {err}");
        assert!(
            err.message.contains(needle),
            "{op:#x}: {err} lacks {needle}"
        );
    }
    let h = FrameHeader {
        opcode: 0x42,
        request_id: 0,
        body_len: 0,
    };
    let err = decode_request(&h, &[]).unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::MalformedFrame,
        "request id 0 is a framing error"
    );
    assert!(err.code.closes_connection());
    assert!(err.message.contains("request_id"));
}

#[test]
fn bad_message_regions_are_rejected() {
    let ok = cat(&[&4u32.to_le_bytes(), &[0, 0, 0, 0]]);
    assert_eq!(split_messages(&ok, 1).unwrap(), vec![(4, 8)]);
    let cases: Vec<(Vec<u8>, u32, &str)> = vec![
        (ok.clone(), 2, "body_len"),
        (cat(&[&ok, &[0]]), 1, "trailing"),
        (cat(&[&3u32.to_le_bytes(), &[0, 0, 0]]), 1, "body_len 3"),
        (
            cat(&[&8u32.to_le_bytes(), &[0, 0, 0, 0]]),
            1,
            "message body",
        ),
        (
            (limits::MESSAGE_BODY_LEN_MAX + 1).to_le_bytes().to_vec(),
            1,
            "body_len",
        ),
        (ok.clone(), 0, "count"),
    ];
    for (region, count, needle) in cases {
        let err = split_messages(&region, count).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains(needle), "{err} lacks {needle}");
    }
}

#[test]
fn bad_responses_are_malformed() {
    let rec = a_record(1, b"x");
    let mut bad_crc = rec.clone();
    *bad_crc.last_mut().unwrap() ^= 1;
    let cases: Vec<(u8, u32, Vec<u8>, &str)> = vec![
        (0x01, 1, vec![], "not a server frame"),
        (0x99, 1, vec![], "not a server frame"),
        (0x84, 0, vec![], "request_id 0"),
        (0x84, 1, vec![0], "trailing"),
        (0xE1, 1, vec![0; 20], "non-zero request_id"),
        (
            0xE1,
            0,
            cat(&[&[0; 4], &5u64.to_le_bytes(), &5u64.to_le_bytes()]),
            "oldest_id",
        ),
        (0x82, 1, cat(&[&[3], &[0; 8], &[0, 0]]), "identity_kind"),
        (
            0xFF,
            1,
            cat(&[&999u16.to_le_bytes(), &[0, 0]]),
            "error code",
        ),
        (
            0x90,
            1,
            cat(&[&1u32.to_le_bytes(), &[0; 8], &2u32.to_le_bytes()]),
            "dup_count",
        ),
        (
            0x90,
            1,
            cat(&[&2u32.to_le_bytes(), &[0; 8], &1u32.to_le_bytes()]),
            "duplicates region",
        ),
        (
            0x90,
            1,
            cat(&[
                &2u32.to_le_bytes(),
                &[0; 8],
                &1u32.to_le_bytes(),
                &2u32.to_le_bytes(),
                &[0; 8],
            ]),
            "index",
        ),
        (0xE0, 0, cat(&[&[0; 4], &0u32.to_le_bytes()]), "count 0"),
        (
            0xE0,
            0,
            cat(&[&[0; 4], &2u32.to_le_bytes(), &rec]),
            "1 records",
        ),
        (
            0xE0,
            0,
            cat(&[&[0; 4], &1u32.to_le_bytes(), &rec[..rec.len() - 1]]),
            "past the frame",
        ),
        (0xB1, 1, cat(&[&rec, &[0, 0]]), "truncated"),
        (
            0xB0,
            1,
            (limits::HISTORY_PAGE_MAX + 1).to_le_bytes().to_vec(),
            "count",
        ),
        (0x83, 1, vec![0; limits::PING_DATA_LEN_MAX + 1], "pong"),
    ];
    for (op, id, body, needle) in cases {
        let h = FrameHeader {
            opcode: op,
            request_id: id,
            body_len: body.len(),
        };
        let err = decode_response(&h, &body).expect_err(&format!("{op:#x}"));
        assert_eq!(err.code, ErrorCode::MalformedFrame, "{op:#x}: {err}");
        assert!(
            err.message.contains(needle),
            "{op:#x}: {err} lacks {needle}"
        );
    }
    // A flipped payload bit passes the length walk but fails the CRC.
    let got: Vec<_> = records(&bad_crc).collect();
    assert_eq!(got.len(), 1);
    assert!(got[0].as_ref().unwrap_err().message.contains("CRC"));
}

#[test]
fn opcodes_and_error_codes_are_unique_and_invertible() {
    for op in Opcode::ALL {
        assert_eq!(Opcode::from_u8(*op as u8), Some(*op));
    }
    let n = (0..=255u8).filter_map(Opcode::from_u8).count();
    assert_eq!(n, Opcode::ALL.len());
    for c in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u16(*c as u16), Some(*c));
    }
    let n = (0..=u16::MAX).filter_map(ErrorCode::from_u16).count();
    assert_eq!(n, ErrorCode::ALL.len());
}

#[test]
fn version_negotiation_picks_the_only_version_or_none() {
    assert_eq!(negotiate_version(1, 1), Some(1));
    assert_eq!(negotiate_version(0, 9), Some(2));
    assert_eq!(negotiate_version(1, 2), Some(2));
    assert_eq!(negotiate_version(2, 9), Some(2));
    assert_eq!(negotiate_version(3, 9), None);
    assert_eq!(negotiate_version(0, 0), None);
}

/// Decodes the first frame of `buf` as a sans-IO caller would.
fn decode_prefix(buf: &[u8], request: bool) -> Result<Option<()>, WireError> {
    let Some(h) = decode_header(buf)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.body_len) else {
        return Ok(None);
    };
    if request {
        decode_request(&h, body).map(|_| Some(()))
    } else {
        decode_response(&h, body).map(|_| Some(()))
    }
}

#[test]
fn every_truncation_needs_more_bytes_and_never_panics() {
    let mut frames: Vec<(Vec<u8>, bool)> = every_request()
        .iter()
        .map(|r| (req_frame(1, r), true))
        .collect();
    let mut publish = Vec::new();
    encode_publish(
        &mut publish,
        1,
        "c",
        AckMode::Append,
        &[&[0, 0, 0, 0, b'x']],
    );
    frames.push((publish, true));
    for (id, resp) in every_response(two_records()) {
        frames.push((resp_frame(id, &resp), false));
    }
    for (frame, request) in frames {
        assert_eq!(decode_prefix(&frame, request), Ok(Some(())));
        for cut in 0..frame.len() {
            assert_eq!(decode_prefix(&frame[..cut], request), Ok(None), "cut {cut}");
            // The same cut body presented as complete: an error or a
            // shorter valid value, never a panic.
            if cut >= FRAME_HEADER_LEN {
                let h = FrameHeader {
                    body_len: cut - FRAME_HEADER_LEN,
                    ..decode_header(&frame).unwrap().unwrap()
                };
                let body = &frame[FRAME_HEADER_LEN..cut];
                if request {
                    let _ = decode_request(&h, body);
                } else {
                    let _ = decode_response(&h, body);
                }
            }
        }
    }
}

#[test]
fn pseudo_random_inputs_never_panic_the_decoders() {
    let mut seeds: Vec<Vec<u8>> = every_request().iter().map(|r| req_frame(1, r)).collect();
    for (id, resp) in every_response(two_records()) {
        seeds.push(resp_frame(id, &resp));
    }
    let mut publish = Vec::new();
    let mut body = Vec::new();
    let fields = MessageFields {
        room: Some("Lobby"),
        uuid: Some([1; 16]),
        ..MessageFields::default()
    };
    encode_body(&mut body, &fields, b"payload");
    encode_publish(&mut publish, 1, "c", AckMode::Append, &[&body, &body]);
    seeds.push(publish);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..4000 {
        let mut input = seeds[i % seeds.len()].clone();
        for _ in 0..(next() % 4) {
            if input.is_empty() {
                break;
            }
            let at = (next() as usize) % input.len();
            input[at] = next() as u8;
        }
        if next() % 3 == 0 {
            let len = (next() as usize) % 64;
            input = (0..len).map(|_| next() as u8).collect();
        }
        crate::wire::fuzzing::frame_decode(&input);
        crate::wire::fuzzing::request_parse(&input);
        crate::wire::fuzzing::request_parse(input.get(FRAME_HEADER_LEN..).unwrap_or(&[]));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn subscribe_and_history_round_trip(
        sub_id: u32,
        channel in "[a-z0-9_-]{0,64}",
        room in "\\PC{0,32}",
        kind in 0u8..4,
        value: u64,
        newest_first: bool,
        after_id: u64,
        before_id: u64,
        limit in 0..=limits::HISTORY_PAGE_MAX,
        id in 1u32..,
    ) {
        let start = start_from_parts(kind, value).unwrap();
        let reqs = [
            Request::Subscribe { sub_id, channel: &channel, room: &room, start, committed: newest_first },
            Request::History { channel: &channel, room: &room, newest_first, after_id, before_id, limit, raw: newest_first },
            Request::Fetch { channel: &channel, id: value, raw: !newest_first },
        ];
        for req in reqs {
            let frame = req_frame(id, &req);
            let (h, body) = split(&frame);
            prop_assert_eq!(decode_request(&h, body).unwrap(), req);
        }
    }

    #[test]
    fn publish_round_trips(
        channel in "[a-z]{1,64}",
        ack in 0u8..3,
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
    ) {
        let bodies: Vec<Vec<u8>> = payloads.iter().map(|p| {
            let mut b = Vec::new();
            encode_body(&mut b, &MessageFields::default(), p);
            b
        }).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        encode_publish(&mut out, 9, &channel, AckMode::from_u8(ack).unwrap(), &refs);
        let (h, body) = split(&out);
        let Request::Publish { count, messages_offset, .. } = decode_request(&h, body).unwrap() else {
            panic!("not a publish");
        };
        let region = &body[messages_offset..];
        let got: Vec<&[u8]> = split_messages(region, count).unwrap().into_iter().map(|(s, e)| &region[s..e]).collect();
        prop_assert_eq!(got, refs);
    }

    #[test]
    fn publish_ack_and_errors_round_trip(
        count in 1u32..1000,
        first_id: u64,
        dups in proptest::collection::btree_map(0u32..1000, any::<u64>(), 0..10),
        code_index in 0..ErrorCode::ALL.len(),
        message in "\\PC{0,200}",
        id in 1u32..,
    ) {
        let duplicates: Vec<(u32, u64)> = dups.into_iter().filter(|(i, _)| *i < count).collect();
        let code = ErrorCode::ALL[code_index];
        let resps = [
            Response::PublishAck { count, first_id, duplicates: duplicates.clone(), uuids: vec![] },
            Response::PublishAck { count, first_id, duplicates, uuids: vec![[7; 16]; count as usize] },
            Response::Error { code, message: &message },
            Response::SubscriptionClosed { sub_id: id, code, message: &message },
        ];
        for resp in resps {
            let frame = resp_frame(id, &resp);
            let (h, body) = split(&frame);
            prop_assert_eq!(decode_response(&h, body).unwrap(), resp);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        crate::wire::fuzzing::frame_decode(&data);
        crate::wire::fuzzing::request_parse(&data);
    }
}
