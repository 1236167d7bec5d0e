//! Checks that `protocol.md`, the normative protocol document, matches the
//! code: the opcode, error-code and limit tables row for row, and every hex
//! example decodes with the real codec. A change to either side without the
//! other fails here.

mod protocol_doc;

use protocol_doc::{doc, hex_blocks};
use tidewire::limits;
use tidewire::wire::{
    decode_header, decode_request, decode_response, records, ErrorCode, Opcode, Response,
    FRAME_HEADER_LEN,
};

/// The cells of the rows of the table whose header row starts with `header`
/// (e.g. `"| opcode | name |"`), separator row skipped.
fn table(doc: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table starting with {header:?}");
    let separator = lines.next().unwrap_or_default();
    assert!(
        separator.starts_with("| ---"),
        "{header:?} has no separator row"
    );
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "{header:?} has no rows");
    rows
}

#[test]
fn opcode_table_matches_opcode_all() {
    let rows = table(&doc(), "| opcode | name | direction |");
    let documented: Vec<(u8, String, String)> = rows
        .iter()
        .map(|r| {
            let hex = r[0].strip_prefix("0x").expect("opcode as 0xNN");
            let value = u8::from_str_radix(hex, 16).expect("hex opcode");
            (value, r[1].clone(), r[2].clone())
        })
        .collect();
    let code: Vec<(u8, String, String)> = Opcode::ALL
        .iter()
        .map(|op| {
            let direction = if op.is_request() {
                "client → server"
            } else if op.is_push() {
                "server → client (push)"
            } else {
                "server → client"
            };
            (*op as u8, format!("{op:?}"), direction.to_string())
        })
        .collect();
    assert_eq!(documented, code);
}

#[test]
fn error_code_table_matches_error_code_all() {
    let rows = table(&doc(), "| code | name | closes |");
    let documented: Vec<(u16, String, bool)> = rows
        .iter()
        .map(|r| {
            let closes = match r[2].as_str() {
                "yes" => true,
                "no" => false,
                other => panic!("closes column {other:?} is not yes/no"),
            };
            (r[0].parse().expect("numeric code"), r[1].clone(), closes)
        })
        .collect();
    let code: Vec<(u16, String, bool)> = ErrorCode::ALL
        .iter()
        .map(|c| (*c as u16, format!("{c:?}"), c.closes_connection()))
        .collect();
    assert_eq!(documented, code);
}

/// The value of a client-visible limit by its Rust name; `None` for a name
/// that is not one (which fails the test: the document names only constants).
fn limit(name: &str) -> Option<u64> {
    let v = |x: usize| x as u64;
    Some(match name {
        "FRAME_LEN_MAX" => limits::FRAME_LEN_MAX.into(),
        "FRAME_HEADER_REST_LEN" => limits::FRAME_HEADER_REST_LEN.into(),
        "FRAME_LEN_UNAUTHENTICATED_MAX" => limits::FRAME_LEN_UNAUTHENTICATED_MAX.into(),
        "HANDSHAKE_TIMEOUT_MS" => limits::HANDSHAKE_TIMEOUT_MS,
        "PAYLOAD_LEN_MAX" => limits::PAYLOAD_LEN_MAX.into(),
        "MESSAGE_BODY_LEN_MAX" => limits::MESSAGE_BODY_LEN_MAX.into(),
        "PUBLISH_BATCH_MAX" => limits::PUBLISH_BATCH_MAX.into(),
        "CHANNEL_NAME_LEN_MAX" => v(limits::CHANNEL_NAME_LEN_MAX),
        "ROOM_LEN_MAX" => v(limits::ROOM_LEN_MAX),
        "OBJECT_CLASS_LEN_MAX" => v(limits::OBJECT_CLASS_LEN_MAX),
        "TARGET_USER_LEN_MAX" => v(limits::TARGET_USER_LEN_MAX),
        "TARGET_USERS_MAX" => v(limits::TARGET_USERS_MAX),
        "IDEMPOTENCY_KEY_LEN_MAX" => v(limits::IDEMPOTENCY_KEY_LEN_MAX),
        "KEY_LEN_MAX" => v(limits::KEY_LEN_MAX),
        "ADMIN_JSON_LEN_MAX" => v(limits::ADMIN_JSON_LEN_MAX),
        "CLIENT_NAME_LEN_MAX" => v(limits::CLIENT_NAME_LEN_MAX),
        "SERVER_NAME_LEN_MAX" => v(limits::SERVER_NAME_LEN_MAX),
        "PING_DATA_LEN_MAX" => v(limits::PING_DATA_LEN_MAX),
        "ERROR_MESSAGE_LEN_MAX" => v(limits::ERROR_MESSAGE_LEN_MAX),
        "HISTORY_PAGE_MAX" => limits::HISTORY_PAGE_MAX.into(),
        "HISTORY_PAGE_DEFAULT" => limits::HISTORY_PAGE_DEFAULT.into(),
        "SUBSCRIPTIONS_PER_CONNECTION_MAX" => v(limits::SUBSCRIPTIONS_PER_CONNECTION_MAX),
        "CONNECTIONS_MAX" => v(limits::CONNECTIONS_MAX),
        "CHANNELS_MAX" => v(limits::CHANNELS_MAX),
        "CONNECTION_WRITE_BUFFER_HIGH" => v(limits::CONNECTION_WRITE_BUFFER_HIGH),
        "LIVE_RING_RECORDS_MAX" => v(limits::LIVE_RING_RECORDS_MAX),
        "LIVE_RING_BYTES_MAX" => v(limits::LIVE_RING_BYTES_MAX),
        "RETENTION_US_DEFAULT" => limits::RETENTION_US_DEFAULT,
        "RETENTION_SECS_MAX" => limits::RETENTION_SECS_MAX,
        "CHANNEL_DESCRIPTION_LEN_MAX" => v(limits::CHANNEL_DESCRIPTION_LEN_MAX),
        "CONNECTION_INFLIGHT_REQUESTS_MAX" => v(limits::CONNECTION_INFLIGHT_REQUESTS_MAX),
        "INSTANCE_NAME_LEN_MAX" => v(limits::INSTANCE_NAME_LEN_MAX),
        "USERNAME_LEN_MAX" => v(limits::USERNAME_LEN_MAX),
        "GROUP_NAME_LEN_MAX" => v(limits::GROUP_NAME_LEN_MAX),
        "IDENTITY_DESCRIPTION_LEN_MAX" => v(limits::IDENTITY_DESCRIPTION_LEN_MAX),
        _ => return None,
    })
}

#[test]
fn limit_table_values_equal_the_constants() {
    let rows = table(&doc(), "| limit | value |");
    for r in &rows {
        let documented: u64 = r[1].parse().unwrap_or_else(|_| panic!("{}: value", r[0]));
        let actual = limit(&r[0]).unwrap_or_else(|| panic!("{} is not a known limit", r[0]));
        assert_eq!(documented, actual, "{}", r[0]);
    }
    // The limits every client must know are listed.
    for name in [
        "FRAME_LEN_MAX",
        "PAYLOAD_LEN_MAX",
        "PUBLISH_BATCH_MAX",
        "HISTORY_PAGE_MAX",
    ] {
        assert!(rows.iter().any(|r| r[0] == name), "{name} missing");
    }
}

/// The defaults of the configurable tenancy limits are the ones documented.
#[test]
fn tenancy_limit_defaults_are_documented() {
    let rows = table(&doc(), "| tenancy limit | default |");
    let d = limits::TenancyLimits::default();
    let expected = [
        ("instances_max", d.instances_max),
        ("channels_per_instance_max", d.channels_per_instance_max),
        ("admin_keys_max", d.admin_keys_max),
        ("api_keys_per_instance_max", d.api_keys_per_instance_max),
        ("users_per_instance_max", d.users_per_instance_max),
        ("groups_per_instance_max", d.groups_per_instance_max),
        ("members_per_group_max", d.members_per_group_max),
    ];
    let documented: Vec<(String, usize)> = rows
        .iter()
        .map(|r| {
            (
                r[0].trim_matches('`').to_string(),
                r[1].parse().expect("numeric default"),
            )
        })
        .collect();
    let expected: Vec<(String, usize)> =
        expected.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    assert_eq!(documented, expected);
}

#[test]
fn hex_examples_decode_with_the_codec() {
    let blocks = hex_blocks(&doc());
    assert!(
        blocks.len() >= 11,
        "the session has {} frames",
        blocks.len()
    );
    let mut opcodes = Vec::new();
    for (i, frame) in blocks.iter().enumerate() {
        let h = decode_header(frame)
            .unwrap_or_else(|e| panic!("block {i}: {e}"))
            .unwrap_or_else(|| panic!("block {i}: short header"));
        assert_eq!(
            frame.len(),
            FRAME_HEADER_LEN + h.body_len,
            "block {i}: length"
        );
        let body = &frame[FRAME_HEADER_LEN..];
        let op = Opcode::from_u8(h.opcode).expect("known opcode");
        opcodes.push(op);
        if op.is_request() {
            decode_request(&h, body).unwrap_or_else(|e| panic!("block {i}: {e}"));
        } else {
            let resp = decode_response(&h, body).unwrap_or_else(|e| panic!("block {i}: {e}"));
            if let Response::Deliver { records: recs, .. } = resp {
                for r in records(recs) {
                    let r = r.unwrap_or_else(|e| panic!("block {i}: {e}"));
                    assert_eq!(r.payload(), br#"{"hi":1}"#);
                }
            }
        }
    }
    for needed in [
        Opcode::Hello,
        Opcode::HelloOk,
        Opcode::Auth,
        Opcode::AuthOk,
        Opcode::Publish,
        Opcode::PublishAck,
        Opcode::Edit,
        Opcode::Delete,
        Opcode::Live,
        Opcode::Subscribe,
        Opcode::Subscribed,
        Opcode::Deliver,
        Opcode::Error,
    ] {
        assert!(opcodes.contains(&needed), "no hex example of {needed:?}");
    }
}
