//! Unit tests of the client's pure parts.

use super::*;
use crate::storage::record::{record_len, write_record, Author};

fn ack(count: u32, first_id: u64, duplicates: Vec<(u32, u64)>) -> PublishAckInfo {
    PublishAckInfo {
        request_id: 1,
        count,
        first_id,
        duplicates,
        uuids: Vec::new(),
    }
}

#[test]
fn ack_ids_are_consecutive_without_duplicates() {
    assert_eq!(ack(3, 10, vec![]).ids(), vec![10, 11, 12]);
    assert_eq!(ack(3, 10, vec![]).new_count(), 3);
}

#[test]
fn ack_ids_put_duplicates_at_their_index_and_skip_them_in_the_sequence() {
    let a = ack(5, 20, vec![(3, 7), (0, 4)]);
    assert_eq!(a.ids(), vec![4, 20, 21, 7, 22]);
    assert_eq!(a.new_count(), 3);
}

#[test]
fn ack_ids_of_an_all_duplicate_batch_are_the_originals() {
    assert_eq!(ack(2, 0, vec![(0, 5), (1, 6)]).ids(), vec![5, 6]);
    assert_eq!(ack(2, 0, vec![(0, 5), (1, 6)]).new_count(), 0);
}

#[test]
fn from_parses_every_form() {
    assert_eq!(parse_start("new"), Ok(Start::New));
    assert_eq!(parse_start("earliest"), Ok(Start::Earliest));
    assert_eq!(parse_start("42"), Ok(Start::AfterId(41)));
    assert_eq!(parse_start("1"), Ok(Start::AfterId(0)));
    assert_eq!(parse_start("0"), Ok(Start::AfterId(0)));
    assert_eq!(
        parse_start("2026-11-22T10:00:00Z"),
        Ok(Start::AtTime(1_795_341_600_000_000))
    );
    assert_eq!(
        parse_start("@1795341600"),
        Ok(Start::AtTime(1_795_341_600_000_000))
    );
    for bad in [
        "",
        "latest",
        "@",
        "@-1",
        "@x",
        "12a",
        "2026-11-22",
        "99999999999999999999",
    ] {
        assert!(parse_start(bad).is_err(), "{bad}");
    }
}

fn records(ids: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &id in ids {
        let mut body = Vec::new();
        OutgoingMessage::text("m").encode_body(&mut body).unwrap();
        let start = out.len();
        out.resize(start + record_len(Author::None, body.len()), 0);
        write_record(&mut out[start..], id, id * 10, Author::None, &body);
    }
    out
}

#[test]
fn split_records_yields_each_record_and_checks_the_count() {
    let raw = records(&[1, 2, 3]);
    let mut ids = Vec::new();
    split_records(&raw, 3, |r| ids.push(Message::from_record(r).unwrap().id)).unwrap();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(split_records(&raw, 2, |_| {}).is_err());
    assert!(split_records(&raw, 4, |_| {}).is_err());
    assert!(split_records(&raw[..raw.len() - 1], 3, |_| {}).is_err());
}

#[test]
fn inflight_removal_finds_any_position() {
    let mut q: VecDeque<u32> = [1, 2, 3].into_iter().collect();
    assert!(remove_inflight(&mut q, 2));
    assert!(remove_inflight(&mut q, 1));
    assert!(!remove_inflight(&mut q, 9));
    assert_eq!(q, VecDeque::from(vec![3]));
}
