//! Arbitrary bytes as a segment's data region: the recovery scan must never
//! panic and must only report whole, valid, consecutive records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewire::storage::recovery;
use tidewire::storage::RecordView;

fuzz_target!(|data: &[u8]| {
    let start = data.first().map_or(0, |&b| usize::from(b) % 64);
    let mut last = None;
    let r = recovery::scan_with(data, start, &mut |off, v| {
        assert!(matches!(RecordView::decode(&data[off..]), Ok(Some(_))));
        if let Some(prev) = last {
            assert_eq!(v.id(), prev + 1);
        }
        last = Some(v.id());
    });
    assert!(r.end <= data.len());
    assert_eq!(r.last_id, last);
});
