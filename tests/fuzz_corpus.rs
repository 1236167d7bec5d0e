//! The seed corpus of the fuzz targets (`fuzz/corpus/<target>/seed-*`) is
//! made from valid inputs: the hex examples of `protocol.md`, frames and
//! records built with the codecs, a segment's data region, and HTTP requests
//! of the Syncano shim. This test builds the seeds, checks that each is
//! valid for its decoder, and checks that the committed corpus holds exactly
//! these seeds, so a format change that makes them stale fails here.
//!
//! `TIDEWIRE_FUZZ_CORPUS_WRITE=1 cargo test --test fuzz_corpus` rewrites
//! them. Other files in the corpus directories (inputs that fuzzing found
//! worth keeping) are left alone.

mod protocol_doc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tidewire::storage::record::{self, MessageFields};
use tidewire::storage::{recovery, Author, RecordView};
use tidewire::wire::{
    self, decode_header, decode_request, encode_publish, encode_request, AckMode, Request, Start,
    FRAME_HEADER_LEN,
};

const WRITE_ENV: &str = "TIDEWIRE_FUZZ_CORPUS_WRITE";
const TARGETS: [&str; 5] = [
    "frame_decode",
    "request_parse",
    "record_decode",
    "recovery_scan",
    "http_request",
];

type Seeds = BTreeMap<String, Vec<u8>>;

fn body(fields: &MessageFields<'_>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode_body(&mut out, fields, payload);
    record::check_body(&mut out).expect("a valid body");
    out
}

fn bodies() -> Vec<Vec<u8>> {
    let users: &[&str] = &["ada", "bob"];
    vec![
        body(&MessageFields::default(), b"{\"hi\":1}"),
        body(
            &MessageFields {
                room: Some("lobby"),
                idempotency_key: Some(b"order-17"),
                uuid: Some([7; 16]),
                ..MessageFields::default()
            },
            b"keyed",
        ),
        body(
            &MessageFields {
                action: Some(record::Action::Update),
                object_class: Some("book"),
                pm_users: users,
                exclude_users: &["eve"],
                ..MessageFields::default()
            },
            b"{\"title\":\"x\"}",
        ),
    ]
}

fn records() -> Vec<Vec<u8>> {
    let authors = [
        Author::None,
        Author::Admin(1),
        Author::User {
            api_key: 2,
            user: 3,
        },
    ];
    // An edit record, which only the server makes (no publisher body).
    let mut edit = Vec::new();
    let fields = MessageFields {
        action: Some(record::Action::Edit),
        content_type: Some(record::ContentType::Text),
        pm_users: &["ada"],
        uuid: Some([9; 16]),
        ref_id: Some(1),
        ..MessageFields::default()
    };
    record::encode_body(&mut edit, &fields, b"edited");
    let mut all = bodies();
    all.push(edit);
    all.iter()
        .zip(authors.into_iter().cycle())
        .enumerate()
        .map(|(i, (b, author))| {
            let mut dst = vec![0; record::record_len(author, b.len())];
            let id = i as u64 + 1;
            record::write_record(&mut dst, id, 1_767_225_600_000_000 + id, author, b);
            dst
        })
        .collect()
}

fn frame_seeds(hex: &[Vec<u8>]) -> Seeds {
    let mut seeds = Seeds::new();
    for (i, frame) in hex.iter().enumerate() {
        seeds.insert(format!("seed-hex-{i:02}"), frame.clone());
    }
    seeds.insert("seed-hex-session".into(), hex.concat());
    let b = bodies();
    let refs: Vec<&[u8]> = b.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    encode_publish(&mut out, 7, "news", AckMode::Durable, &refs);
    let requests = [
        Request::Subscribe {
            sub_id: 1,
            channel: "news",
            room: "lobby",
            start: Start::AfterId(3),
            committed: false,
        },
        Request::History {
            channel: "news",
            room: "",
            newest_first: true,
            after_id: 0,
            before_id: 10,
            limit: 5,
            raw: false,
        },
        Request::Fetch {
            channel: "news",
            id: 2,
            raw: true,
        },
        Request::Amend {
            channel: "news",
            ack: AckMode::Append,
            target: wire::AmendTarget::Id(2),
            edit: Some((2, b"edited")),
        },
        Request::Amend {
            channel: "news",
            ack: AckMode::Durable,
            target: wire::AmendTarget::Uuid([0x42; 16]),
            edit: None,
        },
        Request::ChannelCreate {
            json: br#"{"name":"news","type":"separate_rooms"}"#,
        },
    ];
    for (i, r) in requests.iter().enumerate() {
        encode_request(&mut out, 8 + i as u32, r);
    }
    seeds.insert("seed-requests".into(), out);
    seeds
}

fn request_seeds(frames: &Seeds) -> Seeds {
    let mut seeds = Seeds::new();
    for (name, bytes) in frames {
        let mut rest = bytes.as_slice();
        let mut k = 0;
        while let Ok(Some(h)) = decode_header(rest) {
            let end = FRAME_HEADER_LEN + h.body_len;
            let body = &rest[FRAME_HEADER_LEN..end];
            if decode_request(&h, body).is_ok() && !name.ends_with("session") {
                seeds.insert(format!("{name}-body-{k}"), body.to_vec());
            }
            rest = &rest[end..];
            k += 1;
        }
    }
    seeds
}

fn record_seeds(hex: &[Vec<u8>]) -> Seeds {
    let mut seeds = Seeds::new();
    for (i, r) in records().into_iter().enumerate() {
        seeds.insert(format!("seed-record-{i}"), r);
    }
    for (i, frame) in hex.iter().enumerate() {
        let h = decode_header(frame).expect("hex frame").expect("whole");
        let body = &frame[FRAME_HEADER_LEN..];
        if let Ok(wire::Response::Deliver { records, .. }) = wire::decode_response(&h, body) {
            for (k, r) in wire::records(records).enumerate() {
                let raw = r.expect("a valid delivered record").raw().to_vec();
                seeds.insert(format!("seed-hex-{i:02}-record-{k}"), raw);
            }
        }
    }
    seeds
}

/// A data region as the recovery target reads it: the first byte picks the
/// scan start (mod 64), so byte 0 is 8 and the records start at offset 8.
fn recovery_seeds() -> Seeds {
    let mut region = vec![8u8, 0, 0, 0, 0, 0, 0, 0];
    for r in records() {
        region.extend_from_slice(&r);
    }
    let whole = region.len();
    region.extend_from_slice(&[0; 64]);
    let mut torn = region[..whole - 5].to_vec();
    torn.extend_from_slice(&[0xff; 16]);
    Seeds::from([
        ("seed-region".into(), region),
        ("seed-region-torn".into(), torn),
    ])
}

/// An HTTP/1.1 request: request line, header lines, and a body with its
/// `Content-Length` when there is one.
fn http(line: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = format!("{line} HTTP/1.1\r\nHost: x\r\n");
    for h in headers {
        out.push_str(&format!("{h}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn http_seeds() -> Seeds {
    let base = "/v1.1/instances/default/channels/news";
    let json = ["X-API-KEY: k", "Content-Type: application/json"];
    let form = [
        "Authorization: token k",
        "Content-Type: application/x-www-form-urlencoded",
    ];
    let poll = format!("GET {base}/poll/?last_id=3&room=lobby");
    let publish = format!("POST {base}/publish/");
    let history = format!("GET {base}/history/?page_size=2&ordering=asc&direction=1&last_pk=4");
    let create = "POST /v1.1/instances/default/channels/";
    let mut pipelined = http(&format!("GET {base}/"), &["X-USER-KEY: u"], "");
    pipelined.extend(http(
        &format!("OPTIONS {base}/history/7/"),
        &["Origin: o"],
        "",
    ));
    Seeds::from([
        ("seed-poll".into(), http(&poll, &["X-API-KEY: k"], "")),
        (
            "seed-publish".into(),
            http(&publish, &json, r#"{"payload":{"hi":1},"room":"lobby"}"#),
        ),
        (
            "seed-history".into(),
            http(&format!("{history}&api_key=k"), &[], ""),
        ),
        (
            "seed-create".into(),
            http(create, &form, "name=news&type=default&description=a+b"),
        ),
        ("seed-pipelined".into(), pipelined),
    ])
}

fn all_seeds() -> BTreeMap<&'static str, Seeds> {
    let hex = protocol_doc::hex_blocks(&protocol_doc::doc());
    let frames = frame_seeds(&hex);
    let requests = request_seeds(&frames);
    BTreeMap::from([
        ("frame_decode", frames),
        ("request_parse", requests),
        ("record_decode", record_seeds(&hex)),
        ("recovery_scan", recovery_seeds()),
        ("http_request", http_seeds()),
    ])
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn committed_seeds(dir: &Path) -> Seeds {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("seed-")
                .then(|| (name, std::fs::read(e.path()).expect("corpus file")))
        })
        .collect()
}

#[test]
fn every_seed_is_valid_for_its_decoder() {
    let seeds = all_seeds();
    for (name, frame) in &seeds["frame_decode"] {
        let h = decode_header(frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(h.is_some(), "{name}: not one whole frame header");
    }
    assert!(seeds["request_parse"].len() >= 5, "too few request bodies");
    for (name, raw) in &seeds["record_decode"] {
        let (v, used) = RecordView::decode(raw)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: incomplete"));
        assert_eq!(used, raw.len(), "{name}: one whole record");
        assert!(v.id() >= 1);
    }
    let region = &seeds["recovery_scan"]["seed-region"];
    let scan = recovery::scan(region, usize::from(region[0]) % 64);
    assert_eq!(scan.last_id, Some(4), "the region holds records 1..=4");
    for (name, text) in &seeds["http_request"] {
        let parsed =
            tidewire::http::parse_request(text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(parsed.is_some(), "{name}: an incomplete request");
    }
}

#[test]
fn the_committed_seed_corpus_is_the_generated_one() {
    let write = std::env::var_os(WRITE_ENV).is_some();
    for (target, seeds) in all_seeds() {
        assert!(TARGETS.contains(&target));
        let dir = corpus_dir(target);
        if write {
            std::fs::create_dir_all(&dir).expect("corpus directory");
            for stale in committed_seeds(&dir)
                .keys()
                .filter(|n| !seeds.contains_key(*n))
            {
                std::fs::remove_file(dir.join(stale)).expect("stale seed removed");
            }
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(name), bytes).expect("seed written");
            }
        }
        let committed = committed_seeds(&dir);
        let differ: Vec<&String> = seeds
            .keys()
            .chain(committed.keys())
            .filter(|n| seeds.get(*n) != committed.get(*n))
            .collect();
        assert!(
            differ.is_empty(),
            "fuzz/corpus/{target}: seeds missing, changed or stale: {differ:?}; \
             regenerate them with `{WRITE_ENV}=1 cargo test --test fuzz_corpus`"
        );
    }
    let targets: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets"))
            .expect("fuzz targets")
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".rs")
                    .map(String::from)
            })
            .collect();
    for t in &targets {
        assert!(
            TARGETS.contains(&t.as_str()),
            "fuzz target {t} has no seeds here"
        );
    }
}
