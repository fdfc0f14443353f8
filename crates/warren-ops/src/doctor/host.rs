//! The machine under the data dir: free space, how long an fsync takes
//! (the event log acknowledges nothing before one), and the limits a
//! process started from here gets.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{bytes, Finding, Severity};

const GIB: u64 = 1024 * 1024 * 1024;
/// fsyncs timed; enough for a median, short enough to run on a busy disk.
const FSYNC_SAMPLES: usize = 20;

pub(super) fn check_data_dir(dir: &Path) -> Vec<Finding> {
    let mut findings = vec![space(dir)];
    if dir.is_dir() {
        findings.push(fsync_latency(dir));
    }
    findings
}

/// The data dir, or the nearest folder above it that exists (a stopped
/// deployment that never started has none yet).
fn existing(dir: &Path) -> Option<&Path> {
    dir.ancestors().find(|p| p.exists())
}

fn space(dir: &Path) -> Finding {
    const CHECK: &str = "disk.space";
    let Some(existing) = existing(dir) else {
        return Finding::new(CHECK, Severity::Warning, format!("no folder of {} exists", dir.display()));
    };
    let stats = match nix::sys::statvfs::statvfs(existing) {
        Ok(stats) => stats,
        Err(error) => {
            return Finding::new(
                CHECK,
                Severity::Warning,
                format!("cannot read {}: {error}", existing.display()),
            )
        }
    };
    let block = stats.fragment_size() as u64;
    let total = stats.blocks() as u64 * block;
    let free = stats.blocks_available() as u64 * block;
    let percent = if total == 0 { 0.0 } else { free as f64 * 100.0 / total as f64 };
    let summary =
        format!("{} free of {} ({percent:.1}%) under {}", bytes(free), bytes(total), existing.display());
    let grow = "free space or grow the volume; the event log refuses new events (capture answers 503) \
                rather than fill the disk, and ingest needs room for each batch";
    if percent < 5.0 || free < GIB {
        Finding::new(CHECK, Severity::Critical, summary).fix(grow)
    } else if percent < 15.0 || free < 10 * GIB {
        Finding::new(CHECK, Severity::Warning, summary).fix(grow)
    } else {
        Finding::ok(CHECK, summary)
    }
}

fn fsync_latency(dir: &Path) -> Finding {
    const CHECK: &str = "disk.fsync";
    match time_fsyncs(dir) {
        Ok(mut samples) => {
            samples.sort();
            let median = samples[samples.len() / 2];
            let worst = samples[samples.len() - 1];
            let summary = format!(
                "fsync of 4 KiB: median {:.2} ms, worst {:.2} ms over {FSYNC_SAMPLES}",
                ms(median),
                ms(worst)
            );
            let slow = "every capture acknowledgement waits for an fsync: put the data dir on an SSD \
                        or a volume with a write cache that survives power loss";
            if median > Duration::from_millis(100) {
                Finding::new(CHECK, Severity::Critical, summary).fix(slow)
            } else if median > Duration::from_millis(20) {
                Finding::new(CHECK, Severity::Warning, summary).fix(slow)
            } else {
                Finding::ok(CHECK, summary)
            }
        }
        Err(error) => {
            Finding::new(CHECK, Severity::Critical, format!("cannot write in {}: {error}", dir.display()))
                .fix("the data dir must be writable by the user Warren runs as, with room to write")
        }
    }
}

const FSYNC_FILE_PREFIX: &str = ".doctor-fsync-";

/// Removes the files of `dir` named `prefix…` untouched for ten minutes:
/// temporary files a run killed with SIGKILL left behind (drop never ran
/// to delete them), never those of a run going on beside this one.
pub(crate) fn remove_leftovers(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > Duration::from_secs(600)));
        if stale && entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn time_fsyncs(dir: &Path) -> std::io::Result<Vec<Duration>> {
    remove_leftovers(dir, FSYNC_FILE_PREFIX);
    let mut file = tempfile::Builder::new().prefix(FSYNC_FILE_PREFIX).tempfile_in(dir)?;
    let block = [0u8; 4096];
    let mut samples = Vec::with_capacity(FSYNC_SAMPLES);
    for _ in 0..FSYNC_SAMPLES {
        let started = Instant::now();
        file.write_all(&block)?;
        file.as_file().sync_data()?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The open-files limit this shell hands the processes it starts. A note
/// only: systemd and Kubernetes set their own, which each running process
/// reports (`limits.open_files`, from `processes`).
pub(super) fn check_limits() -> Vec<Finding> {
    const CHECK: &str = "limits.shell_open_files";
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => {
            let mut finding = open_files(CHECK, soft, "this shell");
            finding.severity = finding.severity.min(Severity::Info);
            vec![finding]
        }
        Err(error) => vec![Finding::new(CHECK, Severity::Info, format!("cannot read the limit: {error}"))],
    }
}

/// Warren holds log segments, table files and connections open at once.
pub(super) fn open_files(check: &str, limit: u64, whose: &str) -> Finding {
    let summary = format!("{whose}: open files limit {limit}");
    if limit < 4096 {
        Finding::new(check, Severity::Warning, summary)
            .fix("raise it to 65536: `LimitNOFILE=65536` in the systemd unit, or `ulimit -n 65536`")
    } else {
        Finding::ok(check, summary)
    }
}
