//! The on-disk half of the event stream: `events.jsonl` and its rotated segments, bounded in
//! size and searchable by seq without reading the history.
//!
//! Events are appended to the active file `events.jsonl`. Once it reaches `max_bytes` it
//! is renamed to `events.<first>-<last>.jsonl` (the first and last seq it holds), a fresh
//! active file is started, and the oldest segments beyond `keep` are deleted. Each of
//! those steps is a single rename, create or unlink, and nothing is ever copied, so a
//! kill -9 between any two leaves files that [`EventLog::open`] reads back whole and
//! without duplicates: a segment renamed but no active file yet (created on open), or
//! one segment too many (pruned on open). Appends are not fsynced (as before): a killed
//! process loses nothing the kernel accepted; a power cut may lose the last writes.
//!
//! Finding `since` costs O(log n) (`read.rs`): segment names give each file's seq range, and inside a
//! file lines are in seq order, so a binary search over byte offsets finds the first
//! line after `since`. Lines are written seq first (`{"seq":N,…`), so a probe reads a few
//! bytes rather than a whole (possibly large) event; a line in another key order (a log
//! written by an older codexd) is parsed whole, which is slower but still correct.
//!
//! At most once a second an append compares the active file with what its path names
//! now: if the file was deleted or replaced, the log reopens the path and warns, instead
//! of writing on into an inode nobody can see.

mod read;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use baa::common::jsonl::repair_tail;

use read::{last_seq, probe, tail_of, OpenFile};
pub use read::{LogReader, Source};

/// How often an append checks that the path still names the file being written.
const PATH_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How big the log may grow: the active file rotates at `max_bytes`, and `keep` rotated
/// segments are kept beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub keep: usize,
}

/// A rotated, immutable segment and the seq range its name states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub first: u64,
    pub last: u64,
    pub path: PathBuf,
}

/// The file being appended to.
struct Active {
    file: File,
    /// `(dev, ino)` of `file`, compared with the path's to notice a replaced file.
    id: (u64, u64),
    len: u64,
    first: Option<u64>,
    last: Option<u64>,
    /// A write failed part-way: the next record starts on a fresh line, so the torn
    /// bytes stay one unreadable line instead of spoiling the next event too.
    torn: bool,
}

pub struct EventLog {
    path: PathBuf,
    limits: Limits,
    active: Option<Active>,
    /// Oldest first.
    rotated: Vec<Segment>,
    checked_at: Instant,
    /// A rotation that failed is not retried (and warned about) on every append.
    rotate_failed_at: Option<Instant>,
}

impl EventLog {
    /// Opens the log at `path` (the active file), pruning segments beyond `keep` and
    /// cutting a torn tail. A log that cannot be opened is retried on later appends;
    /// until then events live in memory only (a warning says so).
    pub fn open(path: PathBuf, limits: Limits) -> EventLog {
        if let Some(dir) = path.parent() {
            if let Err(e) = fs::create_dir_all(dir) {
                log::error!("cannot create {}: {e}", dir.display());
            }
        }
        let rotated = list_segments(&path);
        let mut log = EventLog {
            path,
            limits,
            active: None,
            rotated,
            checked_at: Instant::now(),
            rotate_failed_at: None,
        };
        log.prune();
        log.active = log.open_active();
        log
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rotated segments, oldest first.
    #[cfg(test)]
    pub fn segments(&self) -> &[Segment] {
        &self.rotated
    }

    fn open_active(&self) -> Option<Active> {
        match Active::open(&self.path) {
            Ok(a) => Some(a),
            Err(e) => {
                log::error!(
                    "cannot open {}: {e}; events are kept in memory only until it opens",
                    self.path.display()
                );
                None
            }
        }
    }

    /// The highest seq on disk.
    pub fn last_seq(&self) -> Option<u64> {
        let rotated = self.rotated.iter().map(|s| s.last).max();
        let active = self.active.as_ref().and_then(|a| a.last);
        rotated.max(active)
    }

    /// Appends one record (`line` ends with `\n`) for event `seq`, rotating afterwards
    /// if the active file is full.
    pub fn append(&mut self, seq: u64, line: &[u8]) -> io::Result<()> {
        self.check_path();
        let Some(a) = self.active.as_mut() else {
            return Err(io::Error::other("the event log is not open"));
        };
        if a.torn {
            a.file.write_all(b"\n")?;
            a.torn = false;
            a.len += 1;
        }
        if let Err(e) = a.file.write_all(line) {
            a.torn = true;
            a.len = a.file.metadata().map(|m| m.len()).unwrap_or(a.len);
            return Err(e);
        }
        a.len += line.len() as u64;
        a.first.get_or_insert(seq);
        a.last = Some(seq);
        let retry = self
            .rotate_failed_at
            .is_none_or(|t| t.elapsed() >= PATH_CHECK_EVERY);
        if a.len >= self.limits.max_bytes && retry {
            self.rotate();
        }
        Ok(())
    }

    /// At most once per [`PATH_CHECK_EVERY`]: reopens the active file if its path was
    /// deleted or now names another file, or if it could not be opened before.
    fn check_path(&mut self) {
        if self.checked_at.elapsed() < PATH_CHECK_EVERY {
            return;
        }
        self.checked_at = Instant::now();
        if self.active.is_none() {
            // Retried quietly: the first failure was logged.
            if let Ok(a) = Active::open(&self.path) {
                log::warn!("{} opened; events reach disk again", self.path.display());
                self.active = Some(a);
            }
            return;
        }
        if let Some(why) = self.path_changed() {
            log::warn!(
                "{} {why} under codexd; reopened it, later events go to the new file",
                self.path.display()
            );
            self.active = self.open_active();
        }
    }

    /// Makes the next append check the path (tests do not wait a second).
    #[cfg(test)]
    pub fn check_path_now(&mut self) {
        if let Some(t) = Instant::now().checked_sub(PATH_CHECK_EVERY) {
            self.checked_at = t;
        }
    }

    /// Why the path no longer names the active file, if it does not.
    fn path_changed(&self) -> Option<&'static str> {
        let a = self.active.as_ref()?;
        match fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == a.id => None,
            Ok(_) => Some("was replaced"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("was deleted"),
            // Cannot tell (e.g. permissions): keep writing where we are.
            Err(_) => None,
        }
    }

    /// Renames the full active file to its segment name and starts a new one.
    fn rotate(&mut self) {
        if let Some(why) = self.path_changed() {
            // Never rename a file that is not ours; start writing to the new one.
            log::warn!(
                "{} {why} under codexd; reopened it, later events go to the new file",
                self.path.display()
            );
            self.active = self.open_active();
            return;
        }
        let Some((first, last)) = self.active.as_ref().and_then(|a| a.first.zip(a.last)) else {
            return;
        };
        let target = segment_path(&self.path, first, last);
        if let Err(e) = fs::rename(&self.path, &target) {
            if self.rotate_failed_at.is_none() {
                log::warn!(
                    "cannot rotate {} to {}: {e}; appending on, retrying every second",
                    self.path.display(),
                    target.display()
                );
            }
            self.rotate_failed_at = Some(Instant::now());
            return;
        }
        self.rotate_failed_at = None;
        self.rotated.push(Segment {
            first,
            last,
            path: target,
        });
        self.active = self.open_active();
        self.prune();
    }

    /// Deletes the oldest segments beyond `keep`.
    fn prune(&mut self) {
        while self.rotated.len() > self.limits.keep {
            let seg = self.rotated.remove(0);
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot delete {}: {e}", seg.path.display()),
            }
        }
    }

    /// The first seq of the newest unbroken run of events on disk (`next_seq` when the
    /// active file is empty and nothing older joins on). A segment that does not end
    /// right before the next one starts (a lost or replaced file) ends the run: events
    /// before the break are not offered, so a reader never crosses a gap unawares.
    pub fn oldest(&self, next_seq: u64) -> u64 {
        let mut floor = match &self.active {
            Some(a) => a.first.unwrap_or(next_seq),
            None => next_seq,
        };
        for seg in self.rotated.iter().rev() {
            if seg.last.checked_add(1) != Some(floor) {
                break;
            }
            floor = seg.first;
        }
        floor
    }

    /// The files holding events after `since`, oldest first, opened now so later
    /// rotation or pruning cannot pull them away while they are read. `Err(oldest)` if
    /// `since` is older than the oldest event on disk.
    pub fn sources(&mut self, since: u64, next_seq: u64) -> Result<Vec<Source>, u64> {
        'again: loop {
            let oldest = self.oldest(next_seq);
            if since.saturating_add(1) < oldest {
                return Err(oldest);
            }
            let mut out = Vec::new();
            let mut later = self.rotated.iter().filter(|seg| seg.last > since);
            if let Some(seg) = later.next() {
                match OpenFile::open(&seg.path) {
                    Ok(f) => out.push(Source::Open(f)),
                    Err(e) => {
                        log::warn!(
                            "{}: {e}; events {}..={} are no longer kept",
                            seg.path.display(),
                            seg.first,
                            seg.last
                        );
                        // Without it the run of events is broken there; check again.
                        let path = seg.path.clone();
                        self.rotated.retain(|s| s.path != path);
                        continue 'again;
                    }
                }
            }
            out.extend(later.map(|seg| Source::Later(seg.path.clone())));
            if let Some(a) = &self.active {
                match a.file.try_clone() {
                    Ok(file) => out.push(Source::Open(OpenFile { file, len: a.len })),
                    Err(e) => log::warn!("{}: {e}", self.path.display()),
                }
            }
            return Ok(out);
        }
    }

    /// The newest events on disk, oldest first: at most `max_events`, read from at most
    /// the last `max_bytes` of the active file and of the newest segment.
    pub fn tail(&self, max_events: usize, max_bytes: u64) -> Vec<Value> {
        let mut files: Vec<(File, u64)> = Vec::new();
        if let Some(seg) = self.rotated.last() {
            if let Ok(s) = OpenFile::open(&seg.path) {
                files.push((s.file, s.len));
            }
        }
        if let Some(a) = &self.active {
            if let Ok(f) = a.file.try_clone() {
                files.push((f, a.len));
            }
        }
        let mut out: VecDeque<Value> = VecDeque::new();
        for (file, len) in files.iter().rev() {
            if out.len() >= max_events {
                break;
            }
            let mut older = tail_of(file, *len, max_bytes);
            while let Some(v) = older.pop() {
                if out.len() >= max_events {
                    break;
                }
                out.push_front(v);
            }
        }
        out.into()
    }
}

impl Active {
    fn open(path: &Path) -> io::Result<Active> {
        repair_tail(path)?;
        // Events hold prompts and answers: 0600 like the state files. Readable too, so
        // readers can take a duplicate handle of the very file being written.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)?;
        let meta = file.metadata()?;
        let len = meta.len();
        let first = probe(&file, 0, len, len)?.map(|(_, seq)| seq);
        let last = last_seq(&file, len)?;
        Ok(Active {
            file,
            id: (meta.dev(), meta.ino()),
            len,
            first,
            last,
            torn: false,
        })
    }
}

/// `events.<first>-<last>.jsonl` beside `events.jsonl`.
pub fn segment_path(active: &Path, first: u64, last: u64) -> PathBuf {
    let (stem, ext) = stem_ext(active);
    active.with_file_name(format!("{stem}.{first}-{last}{ext}"))
}

fn stem_ext(active: &Path) -> (String, String) {
    let stem = active
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = active
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// The segments beside `active`, oldest first.
fn list_segments(active: &Path) -> Vec<Segment> {
    let Some(dir) = active.parent() else {
        return Vec::new();
    };
    let (stem, ext) = stem_ext(active);
    let prefix = format!("{stem}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Segment> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let range = name.strip_prefix(&prefix)?.strip_suffix(&ext)?;
            let (first, last) = range.split_once('-')?;
            let (first, last) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
            (first <= last).then(|| Segment {
                first,
                last,
                path: entry.path(),
            })
        })
        .collect();
    out.sort_by_key(|s| s.first);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(baa::common::ids::new_id("evlog"));
        fs::create_dir_all(&d).unwrap();
        d.join("events.jsonl")
    }

    fn line(seq: u64, pad: usize) -> Vec<u8> {
        let mut l = format!(
            "{{\"seq\":{seq},\"type\":\"t\",\"detail\":{{\"pad\":\"{}\"}}}}",
            "x".repeat(pad)
        )
        .into_bytes();
        l.push(b'\n');
        l
    }

    fn fill(log: &mut EventLog, seqs: std::ops::RangeInclusive<u64>, pad: usize) {
        for seq in seqs {
            log.append(seq, &line(seq, pad)).unwrap();
        }
    }

    /// Every seq `since < seq < before` the log yields.
    fn read(log: &mut EventLog, since: u64, before: u64) -> Result<Vec<u64>, u64> {
        let sources = log.sources(since, before)?;
        let mut r = LogReader::new(sources, since, before);
        let mut out = Vec::new();
        while let Some((seq, _)) = r.next_line().unwrap() {
            out.push(seq);
        }
        Ok(out)
    }

    fn names(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotates_by_size_keeps_the_newest_segments_and_reads_across_them() {
        let p = tmp();
        let limits = Limits {
            max_bytes: 4096,
            keep: 3,
        };
        let mut log = EventLog::open(p.clone(), limits);
        fill(&mut log, 1..=400, 40);
        let segs = log.segments().to_vec();
        assert_eq!(segs.len(), 3, "{segs:?}");
        assert!(
            segs.windows(2).all(|w| w[0].last + 1 == w[1].first),
            "{segs:?}"
        );
        assert_eq!(names(&p).len(), 4, "{:?}", names(&p));
        for s in &segs {
            assert_eq!(s.path, segment_path(&p, s.first, s.last));
            assert!(fs::metadata(&s.path).unwrap().len() >= 4096);
        }
        let oldest = log.oldest(401);
        assert_eq!(oldest, segs[0].first);
        let all = read(&mut log, oldest - 1, 401).unwrap();
        assert_eq!(all, (oldest..=400).collect::<Vec<_>>());
        assert_eq!(read(&mut log, 0, 401), Err(oldest));
        assert_eq!(read(&mut log, 399, 401).unwrap(), vec![400]);
        assert_eq!(
            read(&mut log, 150.max(oldest), 160.max(oldest + 10))
                .unwrap()
                .len(),
            9
        );
    }

    #[test]
    fn binary_search_finds_every_start_among_long_old_style_and_broken_lines() {
        let p = tmp();
        let mut body = Vec::new();
        let mut lost = Vec::new();
        for seq in 1..=3000u64 {
            match seq % 7 {
                // A write that failed part-way: its seq never made it whole.
                _ if seq % 500 == 0 => {
                    body.extend_from_slice(format!("{{\"seq\":{seq},\"to\n\n").as_bytes());
                    lost.push(seq);
                }
                // Written by an older codexd: keys in alphabetical order.
                0 => body
                    .extend_from_slice(format!("{{\"detail\":{{}},\"seq\":{seq}}}\n").as_bytes()),
                3 => body.extend(line(seq, 40_000)),
                _ => body.extend(line(seq, 10)),
            }
        }
        fs::write(&p, &body).unwrap();
        let len = body.len() as u64;
        for since in [
            0u64, 1, 2, 3, 6, 7, 498, 499, 500, 501, 1234, 2999, 3000, 5000,
        ] {
            let src = OpenFile::open(&p).unwrap();
            let mut r = LogReader::new(vec![Source::Open(src)], since, u64::MAX);
            let got = r.next_line().unwrap().map(|(seq, _)| seq);
            let want = (since + 1..=3000).find(|s| !lost.contains(s));
            assert_eq!(got, want, "since {since} ({len} bytes)");
        }
    }

    #[test]
    fn kill_during_rotation_renamed_but_no_new_file_reads_back_whole() {
        let p = tmp();
        let limits = Limits {
            max_bytes: 1 << 20,
            keep: 3,
        };
        let mut log = EventLog::open(p.clone(), limits);
        fill(&mut log, 1..=50, 10);
        drop(log);
        // The state right after the rename, before the new active file exists.
        fs::rename(&p, segment_path(&p, 1, 50)).unwrap();
        let mut log = EventLog::open(p.clone(), limits);
        assert_eq!(log.last_seq(), Some(50));
        assert_eq!(log.oldest(51), 1);
        fill(&mut log, 51..=60, 10);
        assert_eq!(read(&mut log, 0, 61).unwrap(), (1..=60).collect::<Vec<_>>());
    }

    #[test]
    fn kill_during_rotation_before_pruning_prunes_on_open() {
        let p = tmp();
        for (a, b) in [(1, 10), (11, 20), (21, 30)] {
            let mut body = Vec::new();
            for s in a..=b {
                body.extend(line(s, 5));
            }
            fs::write(segment_path(&p, a, b), body).unwrap();
        }
        let mut log = EventLog::open(
            p.clone(),
            Limits {
                max_bytes: 1 << 20,
                keep: 2,
            },
        );
        assert_eq!(
            names(&p),
            vec!["events.11-20.jsonl", "events.21-30.jsonl", "events.jsonl"]
        );
        assert_eq!(log.last_seq(), Some(30));
        assert_eq!(
            read(&mut log, 10, 31).unwrap(),
            (11..=30).collect::<Vec<_>>()
        );
        assert_eq!(read(&mut log, 5, 31), Err(11));
    }

    #[test]
    fn a_deleted_or_replaced_active_file_is_reopened_and_the_gap_is_not_crossed() {
        let p = tmp();
        let limits = Limits {
            max_bytes: 2048,
            keep: 5,
        };
        let mut log = EventLog::open(p.clone(), limits);
        fill(&mut log, 1..=40, 30);
        let active_first = log.oldest(41);
        assert_eq!(active_first, 1);
        fs::remove_file(&p).unwrap();
        log.check_path_now();
        fill(&mut log, 41..=45, 30);
        let got: Vec<u64> = JsonlLogLines::of(&p);
        assert_eq!(
            got,
            (41..=45).collect::<Vec<_>>(),
            "new events reach the new file"
        );
        // What the deleted file held is gone: a reader is not walked across the hole.
        assert_eq!(log.oldest(46), 41);
        assert_eq!(read(&mut log, 10, 46), Err(41));

        // Replaced by another file: writes move to it.
        let aside = p.with_file_name("aside.jsonl");
        fs::write(&aside, b"").unwrap();
        fs::rename(&aside, &p).unwrap();
        log.check_path_now();
        fill(&mut log, 46..=47, 30);
        assert_eq!(JsonlLogLines::of(&p), vec![46, 47]);
    }

    /// Seqs of the records in a file.
    struct JsonlLogLines;
    impl JsonlLogLines {
        fn of(p: &Path) -> Vec<u64> {
            baa::common::jsonl::JsonlLog::read_all(p)
                .unwrap()
                .iter()
                .filter_map(|v| v["seq"].as_u64())
                .collect()
        }
    }

    #[test]
    fn a_torn_write_does_not_spoil_the_next_record() {
        let p = tmp();
        let mut log = EventLog::open(
            p.clone(),
            Limits {
                max_bytes: 1 << 20,
                keep: 1,
            },
        );
        fill(&mut log, 1..=2, 5);
        let a = log.active.as_mut().unwrap();
        a.file.write_all(b"{\"seq\":3,\"ha").unwrap();
        a.torn = true;
        a.len += 12;
        fill(&mut log, 4..=5, 5);
        assert_eq!(read(&mut log, 0, 6).unwrap(), vec![1, 2, 4, 5]);
    }

    #[test]
    fn a_reader_whose_next_segment_was_pruned_fails_instead_of_skipping_it() {
        let p = tmp();
        let limits = Limits {
            max_bytes: 2048,
            keep: 2,
        };
        let mut log = EventLog::open(p.clone(), limits);
        fill(&mut log, 1..=200, 30);
        let oldest = log.oldest(201);
        let sources = log.sources(oldest - 1, 201).unwrap();
        let mut r = LogReader::new(sources, oldest - 1, 201);
        assert_eq!(r.next_line().unwrap().map(|(s, _)| s), Some(oldest));
        // The rest of the first segment is already open; the next one is pruned now.
        fill(&mut log, 201..=400, 30);
        let mut last = oldest;
        let err = loop {
            match r.next_line() {
                Ok(Some((s, _))) => {
                    assert_eq!(s, last + 1, "skipped");
                    last = s;
                }
                Ok(None) => panic!("read to the end past a pruned segment (last {last})"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
