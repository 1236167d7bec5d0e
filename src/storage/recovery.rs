//! The recovery scan: walks the records of a segment's data region, checking
//! every CRC and that ids are consecutive, and says where valid data ends.
//!
//! Sans-IO and pure, so it can be fuzzed: it takes the bytes, never a file.
//! Used on open for the active segment's tail and to rebuild a lost index.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::storage::record::{RecordError, RecordView};

/// Why a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStop {
    /// A zero length: the end of written data.
    EndOfData,
    /// The region ended exactly after the last valid record.
    EndOfRegion,
    /// A record starts but the region ends before it does.
    Torn,
    /// A record failed its length, CRC or field checks.
    Corrupt(RecordError),
    /// A valid record whose id or time does not follow the previous one.
    OutOfOrder,
}

/// Where valid data ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanResult {
    /// Offset (in the scanned slice) just after the last valid record.
    pub end: usize,
    /// Valid records found.
    pub records: u64,
    /// Id of the first valid record.
    pub first_id: Option<u64>,
    /// Id of the last valid record.
    pub last_id: Option<u64>,
    /// `created_at` of the last valid record (0: none).
    pub last_created_at_us: u64,
    /// Why the scan stopped.
    pub stop: ScanStop,
}

/// Scans `data` from `start`; see [`scan_with`].
pub fn scan(data: &[u8], start: usize) -> ScanResult {
    scan_with(data, start, &mut |_, _| {})
}

/// Scans `data` from `start`, calling `visit(offset, record)` for every valid
/// record, and stops at the first zero length, invalid record, record whose
/// id is not one more than the previous one, or record older than the
/// previous one. Never panics, whatever the bytes.
pub fn scan_with(
    data: &[u8],
    start: usize,
    visit: &mut dyn FnMut(usize, &RecordView<'_>),
) -> ScanResult {
    let mut r = ScanResult {
        end: start.min(data.len()),
        records: 0,
        first_id: None,
        last_id: None,
        last_created_at_us: 0,
        stop: ScanStop::EndOfRegion,
    };
    let mut pos = r.end;
    loop {
        let Some(rest) = data.get(pos..) else {
            r.stop = ScanStop::EndOfRegion;
            return r;
        };
        if rest.is_empty() {
            r.stop = ScanStop::EndOfRegion;
            return r;
        }
        let (view, used) = match RecordView::decode(rest) {
            Ok(Some(v)) => v,
            Ok(None) => {
                r.stop = ScanStop::Torn;
                return r;
            }
            Err(RecordError::EndOfData) => {
                r.stop = ScanStop::EndOfData;
                return r;
            }
            Err(e) => {
                r.stop = ScanStop::Corrupt(e);
                return r;
            }
        };
        let in_order = match r.last_id {
            None => view.id() != 0,
            Some(last) => {
                last.checked_add(1) == Some(view.id())
                    && view.created_at_us() >= r.last_created_at_us
            }
        };
        if !in_order {
            r.stop = ScanStop::OutOfOrder;
            return r;
        }
        visit(pos, &view);
        r.first_id = r.first_id.or(Some(view.id()));
        r.last_id = Some(view.id());
        r.last_created_at_us = view.created_at_us();
        r.records = r.records.saturating_add(1);
        pos = pos.saturating_add(used);
        r.end = pos;
    }
}
