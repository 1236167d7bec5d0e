//! Unit tests of the record format: bodies, records, amendments, live-only bodies.
use super::*;

fn body(fields: &MessageFields<'_>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_body(&mut out, fields, payload);
    out
}

#[test]
fn every_field_round_trips_through_body_and_record() {
    let pm = ["alice", "bob"];
    let ex = ["carol"];
    let fields = MessageFields {
        action: Some(Action::Edit),
        content_type: Some(ContentType::Json),
        room: Some("lobby"),
        object_class: Some("books"),
        pm_users: &pm,
        exclude_users: &ex,
        uuid: Some([7; 16]),
        ref_id: Some(41),
        idempotency_key: Some(b"k-1"),
        live: false,
    };
    let b = body(&fields, br#"{"a":1}"#);
    // Publishers may not set edit/remove or ref_id (the server makes
    // those records); every other field is theirs.
    assert!(matches!(
        check_body(&mut b.clone()),
        Err(RecordError::Malformed(_))
    ));
    let plain = MessageFields {
        action: None,
        ref_id: None,
        room: Some("Lobby"),
        ..fields.clone()
    };
    let mut p = body(&plain, br#"{"a":1}"#);
    let info = check_body(&mut p).unwrap();
    assert_eq!(info.payload_len, 7);
    assert_eq!(body_room(&p), Some(&b"lobby"[..]));
    assert_eq!(body_uuid(&p), Some([7; 16]));
    let author = Author::User {
        api_key: 3,
        user: 9,
    };
    let mut dst = vec![0u8; record_len(author, b.len())];
    let n = write_record(&mut dst, 42, 1_700_000_000_000_000, author, &b);
    assert_eq!(n, dst.len());
    let (v, used) = RecordView::decode(&dst).unwrap().unwrap();
    assert_eq!(used, n);
    assert_eq!(v.id(), 42);
    assert_eq!(v.created_at_us(), 1_700_000_000_000_000);
    assert_eq!(v.action(), Action::Edit);
    assert_eq!(v.content_type(), ContentType::Json);
    assert_eq!(v.author(), author);
    assert_eq!(v.room(), Some(&b"lobby"[..]));
    assert_eq!(v.object_class(), Some(&b"books"[..]));
    assert_eq!(
        v.pm_users().collect::<Vec<_>>(),
        vec![&b"alice"[..], b"bob"]
    );
    assert_eq!(v.exclude_users().collect::<Vec<_>>(), vec![&b"carol"[..]]);
    assert_eq!(v.uuid(), Some([7; 16]));
    assert_eq!(v.ref_id(), Some(41));
    assert_eq!(v.idempotency_key(), Some(&b"k-1"[..]));
    assert_eq!(v.payload(), br#"{"a":1}"#);
    // The staging path builds the same bytes, after what is there.
    for a in [Author::None, Author::Admin(5), Author::ApiKey(6), author] {
        let mut want = vec![0u8; record_len(a, b.len())];
        write_record(&mut want, 42, 7, a, &b);
        let mut staged = vec![0xee; 3];
        assert_eq!(append_record(&mut staged, 42, 7, a, &b), want.len());
        assert_eq!(&staged[..3], &[0xee; 3]);
        assert_eq!(&staged[3..], &want[..]);
    }
}

#[test]
fn a_minimal_record_is_28_bytes_plus_author_and_payload() {
    let mut b = body(&MessageFields::default(), b"hi");
    check_body(&mut b).unwrap();
    assert_eq!(record_len(Author::Admin(1), b.len()), 28 + 8 + 2);
    assert_eq!(record_len(Author::None, b.len()), 28 + 2);
}

#[test]
fn publishers_cannot_set_the_author() {
    let mut b = body(&MessageFields::default(), b"x");
    b[2] |= FLAG_AUTHOR_ADMIN as u8;
    b.splice(4..4, [0u8; 8]);
    assert!(matches!(check_body(&mut b), Err(RecordError::Malformed(_))));
}

#[test]
fn a_flipped_bit_fails_the_crc() {
    let mut b = body(&MessageFields::default(), b"payload");
    check_body(&mut b).unwrap();
    let mut dst = vec![0u8; record_len(Author::None, b.len())];
    write_record(&mut dst, 1, 2, Author::None, &b);
    for bit in 64..dst.len() * 8 {
        let mut d = dst.clone();
        d[bit / 8] ^= 1 << (bit % 8);
        assert!(RecordView::decode(&d).is_err(), "bit {bit}");
    }
}

#[test]
fn partial_records_need_more_bytes() {
    let mut b = body(&MessageFields::default(), b"payload");
    check_body(&mut b).unwrap();
    let mut dst = vec![0u8; record_len(Author::None, b.len())];
    write_record(&mut dst, 1, 2, Author::None, &b);
    for cut in 0..dst.len() {
        assert!(
            matches!(RecordView::decode(&dst[..cut]), Ok(None)),
            "cut {cut}"
        );
    }
    assert_eq!(
        RecordView::decode(&[0, 0, 0, 0]).unwrap_err(),
        RecordError::EndOfData
    );
    assert_eq!(
        RecordView::decode(&[1, 0, 0, 0]).unwrap_err(),
        RecordError::BadLength
    );
}

#[test]
fn exclude_wins_over_pm() {
    let pm = ["a", "b"];
    let ex = ["b"];
    let fields = MessageFields {
        pm_users: &pm,
        exclude_users: &ex,
        ..MessageFields::default()
    };
    let mut b = body(&fields, b"");
    check_body(&mut b).unwrap();
    let mut dst = vec![0u8; record_len(Author::None, b.len())];
    write_record(&mut dst, 1, 2, Author::None, &b);
    let (v, _) = RecordView::decode(&dst).unwrap().unwrap();
    assert!(v.visible_to(Some(b"a")));
    assert!(!v.visible_to(Some(b"b")));
    assert!(!v.visible_to(Some(b"c")));
    assert!(!v.visible_to(None));
}

fn record(id: u64, author: Author, fields: &MessageFields<'_>, payload: &[u8]) -> Vec<u8> {
    let b = body(fields, payload);
    let mut out = Vec::new();
    append_record(&mut out, id, 1000 + id, author, &b);
    out
}

#[test]
fn an_amendment_copies_the_audience_and_the_current_version_folds_it_in() {
    let pm = ["alice", "bob"];
    let ex = ["bob"];
    let original = MessageFields {
        content_type: Some(ContentType::Text),
        room: Some("lobby"),
        pm_users: &pm,
        exclude_users: &ex,
        uuid: Some([5; 16]),
        idempotency_key: Some(b"key"),
        ..MessageFields::default()
    };
    let raw = record(7, Author::ApiKey(3), &original, b"old");
    let o = RecordView::parse_trusted(&raw).unwrap();
    for (kind, payload) in [
        (AmendKind::Edit, &b"new text"[..]),
        (AmendKind::Remove, &b""[..]),
    ] {
        let mut b = Vec::new();
        encode_amend_body(&mut b, &o, kind, ContentType::Json, b"[1]");
        let mut amend = Vec::new();
        append_record(&mut amend, 9, 2000, Author::Admin(1), &b);
        let a = RecordView::decode(&amend).unwrap().unwrap().0;
        assert_eq!(a.ref_id(), Some(7));
        assert_eq!(a.room(), o.room());
        assert!(a.pm_users().eq(o.pm_users()));
        assert!(a.exclude_users().eq(o.exclude_users()));
        assert_eq!(a.uuid(), Some([5; 16]));
        assert_eq!(a.idempotency_key(), None);
        assert_eq!(a.object_class(), None);
        match kind {
            AmendKind::Edit => {
                assert_eq!(
                    (a.action(), a.content_type()),
                    (Action::Edit, ContentType::Json)
                );
                assert_eq!(a.payload(), b"[1]");
            }
            AmendKind::Remove => {
                assert_eq!(a.action(), Action::Remove);
                assert_eq!(a.payload(), payload);
            }
        }
        // Audience: bob is excluded from both, alice sees both.
        for who in [&b"alice"[..], b"bob", b"carol"] {
            assert_eq!(a.visible_to(Some(who)), o.visible_to(Some(who)));
        }
    }
    let mut b = Vec::new();
    encode_amend_body(&mut b, &o, AmendKind::Edit, ContentType::Text, b"new text");
    let mut edit = Vec::new();
    append_record(&mut edit, 9, 2000, Author::Admin(1), &b);
    let e = RecordView::parse_trusted(&edit).unwrap();
    let mut cur = Vec::new();
    current_version(&o, &e, &mut cur);
    let c = RecordView::decode(&cur).unwrap().unwrap().0;
    assert_eq!((c.id(), c.created_at_us()), (7, 1007));
    assert_eq!(
        (c.action(), c.author()),
        (Action::Custom, Author::ApiKey(3))
    );
    assert_eq!(c.ref_id(), Some(9), "names the edit that made this version");
    assert_eq!(c.payload(), b"new text");
    assert_eq!(c.room(), o.room());
    assert_eq!(c.uuid(), o.uuid());
    assert_eq!(c.idempotency_key(), Some(&b"key"[..]));
    assert!(c.pm_users().eq(o.pm_users()));
}

#[test]
fn a_live_body_gets_a_uuid_in_its_place_and_has_no_idempotency_key() {
    let pm = ["ann"];
    let live = MessageFields {
        room: Some("r"),
        pm_users: &pm,
        live: true,
        ..MessageFields::default()
    };
    let mut b = body(&live, b"typing");
    check_body(&mut b).unwrap();
    assert!(body_is_live(&b));
    let u = random_uuid().unwrap();
    assert_eq!((u[6] >> 4, u[8] >> 6), (4, 0b10));
    let with = body_with_uuid(&b, u);
    let mut want = body(
        &MessageFields {
            uuid: Some(u),
            ..live.clone()
        },
        b"typing",
    );
    check_body(&mut want).unwrap();
    assert_eq!(with, want);
    assert_eq!(body_with_uuid(&with, [1; 16]), with, "a uuid stays");
    let mut keyed = body(
        &MessageFields {
            idempotency_key: Some(b"k"),
            ..live
        },
        b"x",
    );
    assert!(check_body(&mut keyed).is_err());
    assert!(!body_is_live(&body(&MessageFields::default(), b"x")));
}
