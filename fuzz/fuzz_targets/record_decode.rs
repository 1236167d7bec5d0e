//! Arbitrary bytes as a record: decoding must never panic, and every accessor
//! of a decoded record must stay inside its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewire::storage::record::{check_body, peek_record_len};
use tidewire::storage::RecordView;

fuzz_target!(|data: &[u8]| {
    let _ = peek_record_len(data);
    if let Ok(Some((v, used))) = RecordView::decode(data) {
        assert!(used <= data.len());
        let _ = (v.id(), v.created_at_us(), v.author(), v.room(), v.object_class());
        let _ = (v.pm_users().count(), v.exclude_users().count(), v.uuid(), v.ref_id());
        let _ = (v.idempotency_key(), v.payload(), v.visible_to(Some(b"u")));
    }
    let _ = RecordView::parse_trusted(data);
    let mut body = data.to_vec();
    let _ = check_body(&mut body);
});
