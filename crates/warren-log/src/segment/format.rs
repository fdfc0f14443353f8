//! The bytes of a segment file: a versioned header, then length-prefixed,
//! CRC32C-checked records.
//!
//! ```text
//! header (40 bytes, little endian)
//!   magic "WARRENLG" | version u32 | partition u32 | base_offset u64
//!   | created_ms i64 | reserved u32 | crc32c(previous 36 bytes) u32
//! record
//!   body_len u32 | crc32c(body) u32 | body
//! body
//!   offset u64 | timestamp_ms i64 | key_len u32 | key | value
//! ```
//!
//! Everything here works on bytes and readers, never on the file system, so
//! the recovery rules can be tested exhaustively.

use std::io::{self, Read};

pub const MAGIC: [u8; 8] = *b"WARRENLG";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 40;
pub const RECORD_PREFIX_LEN: usize = 8;
const BODY_FIXED_LEN: usize = 20;
/// No record may be larger; a larger length prefix is corruption.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// One index entry per this many bytes of records.
const INDEX_INTERVAL_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub partition: u32,
    pub base_offset: u64,
    pub created_ms: i64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.partition.to_le_bytes());
        out[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < HEADER_LEN as usize {
            return Err(format!("header is {} bytes, expected {HEADER_LEN}", bytes.len()));
        }
        if bytes[0..8] != MAGIC {
            return Err("not a Warren segment (bad magic)".into());
        }
        let stored_crc = u32_at(bytes, 36);
        if crc32c::crc32c(&bytes[0..36]) != stored_crc {
            return Err("header checksum mismatch".into());
        }
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "segment format version {version}; this build reads version {FORMAT_VERSION}"
            ));
        }
        Ok(Self {
            partition: u32_at(bytes, 12),
            base_offset: u64_at(bytes, 16),
            created_ms: u64_at(bytes, 24) as i64,
        })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Appends one encoded record to `out`.
pub fn encode_record(out: &mut Vec<u8>, offset: u64, timestamp_ms: i64, key: &[u8], value: &[u8]) {
    let body_len = BODY_FIXED_LEN + key.len() + value.len();
    out.reserve(RECORD_PREFIX_LEN + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The size of a record once encoded.
pub fn encoded_len(key: &[u8], value: &[u8]) -> usize {
    RECORD_PREFIX_LEN + BODY_FIXED_LEN + key.len() + value.len()
}

/// A record decoded from a checked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Why the bytes at some position are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes remain than the record needs.
    Incomplete,
    /// The bytes are there but do not form a record.
    Invalid(String),
}

/// Decodes the record at the start of `bytes`; returns it and its encoded size.
pub fn decode_record(bytes: &[u8]) -> Result<(DecodedRecord<'_>, usize), RecordError> {
    if bytes.len() < RECORD_PREFIX_LEN {
        return Err(RecordError::Incomplete);
    }
    let body_len = body_len(bytes).map_err(RecordError::Invalid)?;
    let total = RECORD_PREFIX_LEN + body_len;
    if bytes.len() < total {
        return Err(RecordError::Incomplete);
    }
    let body = &bytes[RECORD_PREFIX_LEN..total];
    check_body(bytes, body).map_err(RecordError::Invalid)?;
    decode_body(body).map(|record| (record, total)).map_err(RecordError::Invalid)
}

/// The body length a record prefix announces, if a record can have it.
fn body_len(prefix: &[u8]) -> Result<usize, String> {
    let len = u32_at(prefix, 0) as usize;
    if (BODY_FIXED_LEN..=MAX_RECORD_BYTES).contains(&len) {
        Ok(len)
    } else {
        Err(format!("impossible record length {len}"))
    }
}

/// Whether `body` is what the prefix's checksum says.
fn check_body(prefix: &[u8], body: &[u8]) -> Result<(), String> {
    if crc32c::crc32c(body) == u32_at(prefix, 4) {
        Ok(())
    } else {
        Err("record checksum mismatch".into())
    }
}

fn decode_body(body: &[u8]) -> Result<DecodedRecord<'_>, String> {
    let key_len = u32_at(body, 16) as usize;
    if BODY_FIXED_LEN + key_len > body.len() {
        return Err(format!("key length {key_len} exceeds record"));
    }
    Ok(DecodedRecord {
        offset: u64_at(body, 0),
        timestamp_ms: u64_at(body, 8) as i64,
        key: &body[BODY_FIXED_LEN..BODY_FIXED_LEN + key_len],
        value: &body[BODY_FIXED_LEN + key_len..],
    })
}

/// A sparse position index over one segment, with the newest timestamp of
/// each block so a time lookup can skip blocks that end too early.
#[derive(Debug, Clone, Default)]
pub struct SegmentIndex {
    entries: Vec<IndexEntry>,
    last_indexed_pos: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct IndexEntry {
    pub offset: u64,
    pub pos: u64,
    /// Newest timestamp among records from this entry up to the next one.
    pub block_max_ts: i64,
}

impl SegmentIndex {
    /// Notes a record written at `pos`; records must be observed in order.
    pub fn observe(&mut self, offset: u64, pos: u64, timestamp_ms: i64) {
        let starts_block = match self.entries.last() {
            None => true,
            Some(_) => pos >= self.last_indexed_pos + INDEX_INTERVAL_BYTES,
        };
        if starts_block {
            self.entries.push(IndexEntry { offset, pos, block_max_ts: timestamp_ms });
            self.last_indexed_pos = pos;
        } else if let Some(last) = self.entries.last_mut() {
            last.block_max_ts = last.block_max_ts.max(timestamp_ms);
        }
    }

    /// File position from which to scan for `offset`.
    pub fn position_for(&self, offset: u64) -> u64 {
        let at = self.entries.partition_point(|entry| entry.offset <= offset);
        match at.checked_sub(1) {
            Some(i) => self.entries[i].pos,
            None => HEADER_LEN,
        }
    }

    /// File position of the first block holding a record at or after `ts`.
    pub fn position_for_time(&self, timestamp_ms: i64) -> Option<u64> {
        self.entries.iter().find(|entry| entry.block_max_ts >= timestamp_ms).map(|entry| entry.pos)
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.iter().map(|entry| entry.block_max_ts).max()
    }
}

/// What a scan of one segment's records found.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub records: u64,
    /// Bytes of header and intact records: where the next record goes.
    pub valid_len: u64,
    pub next_offset: u64,
    pub index: SegmentIndex,
    pub tail: Tail,
}

/// How a segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    Clean,
    /// An incomplete last write: everything from `at` on is unusable and safe
    /// to cut, because no intact record follows it.
    Torn {
        at: u64,
    },
    /// Bad bytes with more data after them: not a crash artefact.
    Corrupt {
        at: u64,
        reason: String,
    },
}

/// Scans the records of a segment whose header has been read, streaming from
/// `reader` positioned just after the header. `file_len` is the whole file's
/// length, used to tell a torn tail from corruption.
pub fn scan_records(mut reader: impl Read, file_len: u64, base_offset: u64) -> io::Result<ScanOutcome> {
    let mut pos = HEADER_LEN;
    let mut expected = base_offset;
    let mut index = SegmentIndex::default();
    let mut records = 0;
    let mut prefix = [0u8; RECORD_PREFIX_LEN];
    let mut body = Vec::new();
    let tail = loop {
        let remaining = file_len - pos;
        if remaining == 0 {
            break Tail::Clean;
        }
        let damage = match next_record(&mut reader, remaining, &mut prefix, &mut body)? {
            Ok(total) => match decode_body(&body) {
                Ok(record) if record.offset >= expected => {
                    index.observe(record.offset, pos, record.timestamp_ms);
                    records += 1;
                    expected = record.offset.saturating_add(1);
                    pos += total;
                    continue;
                }
                // Intact bytes that make no sense are never a crash artefact.
                Ok(record) => {
                    break Tail::Corrupt {
                        at: pos,
                        reason: format!("record offset {} after offset {}", record.offset, expected - 1),
                    };
                }
                Err(reason) => break Tail::Corrupt { at: pos, reason },
            },
            Err(damage) => damage,
        };
        // A torn write leaves damage only at the end: if an intact record
        // follows, the damage is something else.
        let mut rest = prefix.to_vec();
        rest.extend_from_slice(&body);
        reader.read_to_end(&mut rest)?;
        break match intact_record_after(&rest, expected) {
            IntactAfter::No => Tail::Torn { at: pos },
            IntactAfter::Yes => {
                Tail::Corrupt { at: pos, reason: format!("{damage}, with intact records after it") }
            }
            IntactAfter::Unknown => Tail::Corrupt {
                at: pos,
                reason: format!("{damage}; too much data follows to tell a torn write from damage"),
            },
        };
    };
    Ok(ScanOutcome { records, valid_len: pos, next_offset: expected, index, tail })
}

/// Reads the next record into `prefix` and `body`: its encoded size if its
/// length and checksum hold, else what is wrong with it.
fn next_record(
    reader: &mut impl Read,
    remaining: u64,
    prefix: &mut [u8; RECORD_PREFIX_LEN],
    body: &mut Vec<u8>,
) -> io::Result<Result<u64, String>> {
    body.clear();
    if remaining < RECORD_PREFIX_LEN as u64 {
        prefix.fill(0);
        reader.read_exact(&mut prefix[..remaining as usize])?;
        return Ok(Err("incomplete record header".into()));
    }
    reader.read_exact(prefix)?;
    let len = match body_len(prefix) {
        Ok(len) => len,
        Err(reason) => return Ok(Err(reason)),
    };
    let total = (RECORD_PREFIX_LEN + len) as u64;
    if total > remaining {
        return Ok(Err(format!("record length {len} runs past the end")));
    }
    body.resize(len, 0);
    reader.read_exact(body)?;
    Ok(check_body(prefix, body).map(|()| total))
}

/// The smallest encoded record: how far offsets can advance per byte.
const MIN_RECORD_LEN: usize = RECORD_PREFIX_LEN + BODY_FIXED_LEN;
/// Checksum work allowed when looking past damage at open; beyond it the
/// answer is "unknown" and the open stops safely.
const SEARCH_BUDGET_BYTES: usize = 1 << 30;

/// The intact record starting at `at`, if its offset could really follow
/// `expected` from `gap_start`: each skipped record takes at least
/// [`MIN_RECORD_LEN`] bytes, which rules out records hidden inside values.
fn intact_at(bytes: &[u8], at: usize, gap_start: usize, expected: u64) -> Option<(DecodedRecord<'_>, usize)> {
    let candidate = &bytes[at..];
    if candidate.len() < MIN_RECORD_LEN {
        return None;
    }
    let latest = expected.saturating_add(((at - gap_start) / MIN_RECORD_LEN) as u64 + 1);
    let offset = u64_at(candidate, RECORD_PREFIX_LEN);
    if !(expected..=latest).contains(&offset) {
        return None;
    }
    decode_record(candidate).ok()
}

enum IntactAfter {
    Yes,
    No,
    Unknown,
}

/// Whether an intact record starts anywhere after the first byte of `bytes`.
fn intact_record_after(bytes: &[u8], expected: u64) -> IntactAfter {
    let mut checked = 0usize;
    for at in 1..bytes.len() {
        if checked > SEARCH_BUDGET_BYTES {
            return IntactAfter::Unknown;
        }
        let candidate = &bytes[at..];
        if candidate.len() >= MIN_RECORD_LEN {
            checked += (u32_at(candidate, 0) as usize).min(candidate.len());
        }
        if intact_at(bytes, at, 0, expected).is_some() {
            return IntactAfter::Yes;
        }
    }
    IntactAfter::No
}

/// Keeps every intact record of a damaged segment body (the bytes after the
/// header): where a record is unreadable, it searches byte by byte for the
/// next one that checks out and continues from there. Returns the rebuilt
/// record bytes and how many records were kept.
pub fn salvage_records(records: &[u8], base_offset: u64) -> (Vec<u8>, u64) {
    let mut kept = Vec::with_capacity(records.len());
    let mut count = 0;
    let mut pos = 0;
    let mut gap_start = 0;
    let mut expected = base_offset;
    while pos < records.len() {
        match intact_at(records, pos, gap_start, expected) {
            Some((record, len)) => {
                kept.extend_from_slice(&records[pos..pos + len]);
                expected = record.offset.saturating_add(1);
                count += 1;
                pos += len;
                gap_start = pos;
            }
            None => pos += 1,
        }
    }
    (kept, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_with(records: &[(&[u8], &[u8])]) -> (Vec<u8>, Vec<u64>) {
        let header = SegmentHeader { partition: 0, base_offset: 10, created_ms: 1 };
        let mut bytes = header.encode().to_vec();
        let mut ends = Vec::new();
        for (i, (key, value)) in records.iter().enumerate() {
            encode_record(&mut bytes, 10 + i as u64, 1000 + i as i64, key, value);
            ends.push(bytes.len() as u64);
        }
        (bytes, ends)
    }

    fn scan(bytes: &[u8]) -> ScanOutcome {
        let header = SegmentHeader::decode(bytes).expect("header");
        scan_records(&bytes[HEADER_LEN as usize..], bytes.len() as u64, header.base_offset)
            .expect("in-memory reads do not fail")
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = SegmentHeader { partition: 3, base_offset: 42, created_ms: -5 };
        let mut bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        bytes[20] ^= 1;
        assert!(SegmentHeader::decode(&bytes).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn truncation_at_every_byte_keeps_exactly_the_complete_records(
            values in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), 1..12),
        ) {
            let records: Vec<(&[u8], &[u8])> =
                values.iter().map(|value| (b"key".as_slice(), value.as_slice())).collect();
            let (bytes, ends) = segment_with(&records);
            for cut in HEADER_LEN as usize..=bytes.len() {
                let outcome = scan(&bytes[..cut]);
                let complete = ends.iter().filter(|end| **end <= cut as u64).count() as u64;
                proptest::prop_assert_eq!(outcome.records, complete, "cut at {}", cut);
                proptest::prop_assert_eq!(outcome.next_offset, 10 + complete);
                let clean = ends.contains(&(cut as u64)) || cut as u64 == HEADER_LEN;
                proptest::prop_assert_eq!(outcome.tail == Tail::Clean, clean, "cut at {}", cut);
                proptest::prop_assert!(!matches!(outcome.tail, Tail::Corrupt { .. }), "cut at {}", cut);
            }
        }
    }

    #[test]
    fn a_damaged_length_with_records_after_it_is_corruption_not_a_torn_tail() {
        let (mut bytes, ends) = segment_with(&[(b"k", b"one"), (b"k", b"two"), (b"k", b"three")]);
        // The second record's length now claims more bytes than the file has.
        bytes[ends[0] as usize..ends[0] as usize + 4].copy_from_slice(&10_000u32.to_le_bytes());
        let outcome = scan(&bytes);
        assert_eq!(outcome.records, 1);
        assert!(matches!(outcome.tail, Tail::Corrupt { at, .. } if at == ends[0]), "{:?}", outcome.tail);
    }

    #[test]
    fn pages_of_the_last_write_that_never_reached_disk_are_a_torn_tail() {
        let values = [vec![b'a'; 300], vec![b'b'; 300], vec![b'c'; 300]];
        let records: Vec<(&[u8], &[u8])> = values.iter().map(|v| (b"k".as_slice(), v.as_slice())).collect();
        let (bytes, ends) = segment_with(&records);
        // The file kept its length, but everything from inside the second
        // record on reads as zeros.
        let mut lost_pages = bytes.clone();
        lost_pages[ends[0] as usize + 100..].fill(0);
        let outcome = scan(&lost_pages);
        assert_eq!((outcome.records, outcome.tail), (1, Tail::Torn { at: ends[0] }));
        // Only the low byte of the second record's length landed.
        let mut split_length = bytes.clone();
        split_length[ends[0] as usize + 1..].fill(0);
        let outcome = scan(&split_length);
        assert_eq!((outcome.records, outcome.tail), (1, Tail::Torn { at: ends[0] }));
    }

    #[test]
    fn a_record_hidden_inside_a_value_does_not_pass_for_the_next_one() {
        let mut hidden = Vec::new();
        encode_record(&mut hidden, 1_000_000, 0, b"k", b"planted");
        let mut value = vec![b'x'; 200];
        value.extend_from_slice(&hidden);
        value.extend_from_slice(&[b'y'; 200]);
        let (bytes, ends) = segment_with(&[(b"k", b"one"), (b"k", value.as_slice())]);
        // Cut inside the second record, after the planted one.
        let cut = &bytes[..bytes.len() - 50];
        let outcome = scan(cut);
        assert_eq!((outcome.records, outcome.tail), (1, Tail::Torn { at: ends[0] }));
    }

    #[test]
    fn zero_filled_tail_is_torn_not_corrupt() {
        let (mut bytes, ends) = segment_with(&[(b"k", b"one"), (b"k", b"two")]);
        bytes.extend_from_slice(&[0; 100]);
        let outcome = scan(&bytes);
        assert_eq!(outcome.records, 2);
        assert_eq!(outcome.tail, Tail::Torn { at: ends[1] });
    }

    #[test]
    fn damage_in_the_middle_is_corruption_and_salvage_keeps_the_rest() {
        let (mut bytes, ends) = segment_with(&[(b"k", b"one"), (b"k", b"two"), (b"k", b"three")]);
        bytes[ends[0] as usize + 12] ^= 0xff;
        let outcome = scan(&bytes);
        assert_eq!(outcome.records, 1);
        assert!(matches!(outcome.tail, Tail::Corrupt { at, .. } if at == ends[0]));

        let (kept, count) = salvage_records(&bytes[HEADER_LEN as usize..], 10);
        assert_eq!(count, 2);
        let mut rebuilt = bytes[..HEADER_LEN as usize].to_vec();
        rebuilt.extend_from_slice(&kept);
        let outcome = scan(&rebuilt);
        assert_eq!((outcome.records, outcome.next_offset, outcome.tail), (2, 13, Tail::Clean));
    }

    #[test]
    fn index_finds_positions_and_times() {
        let mut index = SegmentIndex::default();
        let mut pos = HEADER_LEN;
        for offset in 0..10_000u64 {
            index.observe(offset, pos, (offset as i64) * 10);
            pos += 100;
        }
        let at = index.position_for(5_000);
        assert!(at <= HEADER_LEN + 5_000 * 100 && at + INDEX_INTERVAL_BYTES > HEADER_LEN + 5_000 * 100);
        let at = index.position_for_time(50_000).expect("a block reaches that time");
        assert!(at <= HEADER_LEN + 5_000 * 100);
        assert_eq!(index.position_for_time(1_000_000), None);
        assert_eq!(index.max_timestamp(), Some(99_990));
    }
}
