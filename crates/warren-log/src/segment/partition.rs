//! One partition's segment files: recovery at open, creation on roll, and the
//! in-memory view that readers share with the writer.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::format::{self, ScanOutcome, SegmentHeader, SegmentIndex, Tail, HEADER_LEN};
use crate::LogError;

/// A segment as readers see it: only `len` bytes are durable and visible.
#[derive(Debug)]
pub(super) struct Segment {
    pub base_offset: u64,
    pub path: PathBuf,
    pub reader: Arc<File>,
    pub len: u64,
    pub next_offset: u64,
    pub created_ms: i64,
    pub index: SegmentIndex,
}

/// The shared view of a partition. The writer thread is the only one that
/// changes the last (active) segment; retention only removes sealed ones.
#[derive(Debug)]
pub(super) struct Partition {
    pub id: u32,
    pub dir: PathBuf,
    segments: Mutex<Vec<Segment>>,
}

impl Partition {
    pub fn segments(&self) -> MutexGuard<'_, Vec<Segment>> {
        // A poisoned lock means a panic mid-update elsewhere; the segment
        // list itself is still consistent because every update is one push,
        // one remove or plain field writes.
        self.segments.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The active segment's write side, owned by the writer thread.
#[derive(Debug)]
pub(super) struct ActiveSegment {
    pub file: File,
    pub len: u64,
    pub next_offset: u64,
    pub created_ms: i64,
}

impl ActiveSegment {
    pub fn has_records(&self) -> bool {
        self.len > HEADER_LEN
    }
}

fn segment_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| LogError::io(format!("syncing directory {}", dir.display()), e))
}

/// Creates an empty, durable segment starting at `base_offset`.
pub(super) fn create_segment(
    dir: &Path,
    partition: u32,
    base_offset: u64,
    created_ms: i64,
) -> Result<(Segment, ActiveSegment), LogError> {
    let path = segment_path(dir, base_offset);
    let ctx = |what: &str| format!("{what} segment {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| LogError::io(ctx("creating"), e))?;
    let header = SegmentHeader { partition, base_offset, created_ms };
    let written = file
        .write_all_at(&header.encode(), 0)
        .and_then(|()| file.sync_all())
        .map_err(|e| LogError::io(ctx("writing"), e))
        .and_then(|()| sync_dir(dir));
    if let Err(error) = written {
        // Leave no half-made segment behind to block the next attempt.
        let _ = fs::remove_file(&path);
        return Err(error);
    }
    let reader = File::open(&path).map_err(|e| LogError::io(ctx("opening"), e))?;
    let segment = Segment {
        base_offset,
        path,
        reader: Arc::new(reader),
        len: HEADER_LEN,
        next_offset: base_offset,
        created_ms,
        index: SegmentIndex::default(),
    };
    let active = ActiveSegment { file, len: HEADER_LEN, next_offset: base_offset, created_ms };
    Ok((segment, active))
}

/// Opens a partition directory, checking every segment. A torn tail on the
/// active segment is cut off; damage anywhere else stops the open unless
/// `repair` is set, in which case every intact record is kept.
pub(super) fn open_partition(
    dir: &Path,
    id: u32,
    repair: bool,
    now_ms: i64,
) -> Result<(Partition, ActiveSegment), LogError> {
    fs::create_dir_all(dir).map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
    let mut bases = list_segments(dir)?;
    bases.sort_unstable();
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let last_base = bases.last().copied();
    for base in bases {
        let is_last = Some(base) == last_base;
        let path = segment_path(dir, base);
        match open_segment(&path, id, base, is_last, repair)? {
            Some(segment) => {
                if let Some(previous) = segments.last() {
                    if segment.base_offset < previous.next_offset {
                        return Err(LogError::Corrupt {
                            path,
                            position: 0,
                            reason: format!(
                                "segment starts at offset {} but the previous one ends at {}",
                                segment.base_offset, previous.next_offset
                            ),
                        });
                    }
                }
                segments.push(segment);
            }
            None => {
                tracing::warn!(path = %path.display(), "removing segment whose creation was interrupted");
                fs::remove_file(&path)
                    .map_err(|e| LogError::io(format!("removing {}", path.display()), e))?;
            }
        }
    }
    let active = match segments.last() {
        Some(last) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&last.path)
                .map_err(|e| LogError::io(format!("opening {}", last.path.display()), e))?;
            ActiveSegment { file, len: last.len, next_offset: last.next_offset, created_ms: last.created_ms }
        }
        None => {
            let (segment, active) = create_segment(dir, id, 0, now_ms)?;
            segments.push(segment);
            active
        }
    };
    let partition = Partition { id, dir: dir.to_path_buf(), segments: Mutex::new(segments) };
    Ok((partition, active))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let entries = fs::read_dir(dir).map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = name.strip_suffix(".log").and_then(|stem| stem.parse::<u64>().ok()) {
            bases.push(base);
        }
    }
    Ok(bases)
}

/// Opens and checks one segment. `None` means the file is the remains of a
/// segment whose creation crashed before its header was durable.
fn open_segment(
    path: &Path,
    partition: u32,
    base: u64,
    is_last: bool,
    repair: bool,
) -> Result<Option<Segment>, LogError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let corrupt =
        |position: u64, reason: String| LogError::Corrupt { path: path.to_path_buf(), position, reason };
    let mut file = File::open(path).map_err(|e| LogError::io(ctx("opening"), e))?;
    let file_len = file.metadata().map_err(|e| LogError::io(ctx("reading"), e))?.len();
    let mut header_bytes = [0u8; HEADER_LEN as usize];
    if file_len < HEADER_LEN {
        if is_last {
            return Ok(None);
        }
        return Err(corrupt(0, format!("file is {file_len} bytes, shorter than a header")));
    }
    file.read_exact(&mut header_bytes).map_err(|e| LogError::io(ctx("reading"), e))?;
    let header = match SegmentHeader::decode(&header_bytes) {
        Ok(header) => header,
        // A crash while the segment was being created can leave its header
        // as zeros; such a file never held a record.
        Err(_) if is_last && file_len == HEADER_LEN && header_bytes.iter().all(|b| *b == 0) => {
            return Ok(None);
        }
        Err(reason) => return Err(corrupt(0, reason)),
    };
    if header.base_offset != base || header.partition != partition {
        return Err(corrupt(
            0,
            format!(
                "header says partition {} offset {}, file name says partition {partition} offset {base}",
                header.partition, header.base_offset
            ),
        ));
    }
    let mut outcome = scan(&mut file, file_len, base, path)?;
    match &outcome.tail {
        Tail::Clean => {}
        Tail::Torn { at } if is_last => {
            tracing::warn!(
                path = %path.display(),
                at,
                bytes = file_len - at,
                "cutting a torn tail left by an interrupted write"
            );
            truncate(path, *at)?;
        }
        Tail::Torn { at } | Tail::Corrupt { at, .. } if repair => {
            tracing::warn!(path = %path.display(), at, "repairing damaged segment");
            rewrite_intact(path, &header_bytes, base)?;
            let mut file = File::open(path).map_err(|e| LogError::io(ctx("opening"), e))?;
            let file_len = file.metadata().map_err(|e| LogError::io(ctx("reading"), e))?.len();
            file.seek(SeekFrom::Start(HEADER_LEN)).map_err(|e| LogError::io(ctx("reading"), e))?;
            outcome = scan(&mut file, file_len, base, path)?;
            tracing::warn!(path = %path.display(), kept = outcome.records, "segment repaired");
        }
        Tail::Torn { at } => {
            return Err(corrupt(*at, "incomplete record in a sealed segment".into()));
        }
        Tail::Corrupt { at, reason } => return Err(corrupt(*at, reason.clone())),
    }
    let reader = File::open(path).map_err(|e| LogError::io(ctx("opening"), e))?;
    Ok(Some(Segment {
        base_offset: base,
        path: path.to_path_buf(),
        reader: Arc::new(reader),
        len: outcome.valid_len,
        next_offset: outcome.next_offset,
        created_ms: header.created_ms,
        index: outcome.index,
    }))
}

fn scan(file: &mut File, file_len: u64, base: u64, path: &Path) -> Result<ScanOutcome, LogError> {
    let reader = BufReader::with_capacity(256 * 1024, file);
    format::scan_records(reader, file_len, base)
        .map_err(|e| LogError::io(format!("scanning {}", path.display()), e))
}

fn truncate(path: &Path, len: u64) -> Result<(), LogError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(len).map(|()| file))
        .and_then(|file| file.sync_all())
        .map_err(|e| LogError::io(format!("truncating {}", path.display()), e))
}

/// Replaces a damaged segment with one holding only its intact records.
fn rewrite_intact(path: &Path, header: &[u8], base: u64) -> Result<(), LogError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let bytes = fs::read(path).map_err(|e| LogError::io(ctx("reading"), e))?;
    let (kept, _) = format::salvage_records(&bytes[HEADER_LEN as usize..], base);
    let repaired = path.with_extension("repair");
    let mut contents = header.to_vec();
    contents.extend_from_slice(&kept);
    fs::write(&repaired, &contents)
        .and_then(|()| File::open(&repaired)?.sync_all())
        .map_err(|e| LogError::io(ctx("writing repaired copy of"), e))?;
    fs::rename(&repaired, path).map_err(|e| LogError::io(ctx("replacing"), e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}
