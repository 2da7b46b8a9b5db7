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
//! Finding `since` costs O(log n): segment names give each file's seq range, and inside a
//! file lines are in seq order, so a binary search over byte offsets finds the first
//! line after `since`. Lines are written seq first (`{"seq":N,…`), so a probe reads a few
//! bytes rather than a whole (possibly large) event; a line in another key order (a log
//! written by an older codexd) is parsed whole, which is slower but still correct.
//!
//! At most once a second an append compares the active file with what its path names
//! now: if the file was deleted or replaced, the log reopens the path and warns, instead
//! of writing on into an inode nobody can see.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use serde_json::Value;

use baa::common::jsonl::repair_tail;

/// How often an append checks that the path still names the file being written.
const PATH_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Below this many bytes the binary search gives way to reading lines in order.
const SCAN_BYTES: u64 = 16 * 1024;
/// Read size when scanning for line ends and when reading lines in order.
const CHUNK: u64 = 64 * 1024;
/// Bytes read at a line start to find a seq-first line's seq.
const PREFIX: usize = 32;
const SEQ_PREFIX: &[u8] = b"{\"seq\":";

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

/// One file to read for a `since` request.
pub enum Source {
    /// Opened when chosen: the segment the search starts in, and the active file with
    /// the length it had then (only what was written before is read).
    Open(OpenFile),
    /// A later rotated segment, opened when the reader reaches it, so a reader far
    /// behind holds two files open rather than all of them. If it was pruned in the
    /// meantime the reader fails and the stream ends; the client's retry gets a 410.
    Later(PathBuf),
}

pub struct OpenFile {
    file: File,
    len: u64,
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

impl OpenFile {
    fn open(path: &Path) -> io::Result<OpenFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(OpenFile { file, len })
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

// ---- reading ----------------------------------------------------------------------------

/// Reads the events with `since < seq < before` from `sources` in order, finding the
/// start in the first file by binary search.
pub struct LogReader {
    sources: VecDeque<Source>,
    since: u64,
    before: u64,
    current: Option<Lines>,
    searched: bool,
    done: bool,
}

impl LogReader {
    pub fn new(sources: Vec<Source>, since: u64, before: u64) -> LogReader {
        LogReader {
            sources: sources.into(),
            since,
            before,
            current: None,
            searched: false,
            done: since.saturating_add(1) >= before,
        }
    }

    /// The next event's seq and its line (valid JSON, no newline), or None at the end.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Vec<u8>)>> {
        while !self.done {
            let Some(lines) = self.current.as_mut() else {
                let src = match self.sources.pop_front() {
                    Some(Source::Open(f)) => f,
                    Some(Source::Later(path)) => OpenFile::open(&path).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?,
                    None => {
                        self.done = true;
                        break;
                    }
                };
                let start = if self.searched {
                    0
                } else {
                    self.searched = true;
                    first_after(&src.file, src.len, self.since)?
                };
                self.current = Some(Lines::new(src, start));
                continue;
            };
            let Some(line) = lines.next()? else {
                self.current = None;
                continue;
            };
            let Some(seq) = line_seq(&line) else {
                continue;
            };
            if seq <= self.since {
                continue;
            }
            if seq >= self.before {
                self.done = true;
                break;
            }
            return Ok(Some((seq, line)));
        }
        Ok(None)
    }
}

/// Lines of one file from an offset up to a length, read positionally (`pread`), so a
/// duplicate handle of the file being appended to is read without moving its offset.
struct Lines {
    src: OpenFile,
    pos: u64,
    buf: Vec<u8>,
    start: usize,
}

impl Lines {
    fn new(src: OpenFile, pos: u64) -> Lines {
        Lines {
            src,
            pos,
            buf: Vec::new(),
            start: 0,
        }
    }

    fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf[self.start..].iter().position(|b| *b == b'\n') {
                let line = self.buf[self.start..self.start + i].to_vec();
                self.start += i + 1;
                return Ok(Some(line));
            }
            if self.pos >= self.src.len {
                // An unterminated last line (only if the file was cut under us).
                if self.start < self.buf.len() {
                    let line = self.buf[self.start..].to_vec();
                    self.start = self.buf.len();
                    return Ok(Some(line));
                }
                return Ok(None);
            }
            self.buf.drain(..self.start);
            self.start = 0;
            let n = CHUNK.min(self.src.len - self.pos) as usize;
            let old = self.buf.len();
            self.buf.resize(old + n, 0);
            self.src
                .file
                .read_exact_at(&mut self.buf[old..], self.pos)?;
            self.pos += n as u64;
        }
    }
}

/// The seq of a complete, valid JSON record, or None for an unreadable line.
pub fn line_seq(line: &[u8]) -> Option<u64> {
    if let Some(seq) = prefix_seq(line) {
        return serde_json::from_slice::<IgnoredAny>(line).ok().map(|_| seq);
    }
    let v: Value = serde_json::from_slice(line).ok()?;
    v.get("seq").and_then(Value::as_u64)
}

/// The seq of a line written seq first, from its first bytes alone.
fn prefix_seq(head: &[u8]) -> Option<u64> {
    let rest = head.strip_prefix(SEQ_PREFIX)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !matches!(rest.get(digits), Some(b',') | Some(b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The offset of the first line with `seq > since` (or `end`), by binary search.
///
/// Invariant: the answer is the first such line starting in `[lo, hi)`, else `cap`,
/// where `cap` is `end` or a line start known to have `seq > since`.
fn first_after(file: &File, end: u64, since: u64) -> io::Result<u64> {
    let (mut lo, mut hi, mut cap) = (0u64, end, end);
    while hi - lo > SCAN_BYTES {
        let mid = lo + (hi - lo) / 2;
        match probe(file, mid, hi, end)? {
            Some((p, seq)) if seq > since => {
                hi = p;
                cap = p;
            }
            Some((p, _)) => lo = p + 1,
            // No line starts in [mid, hi): the answer is before mid, or it is cap.
            None => hi = mid,
        }
    }
    let mut pos = lo;
    while let Some((p, seq)) = probe(file, pos, hi, end)? {
        if seq > since {
            return Ok(p);
        }
        pos = p + 1;
    }
    Ok(cap)
}

/// The first readable line that starts in `[from, hi)` (the file being `end` long),
/// with its seq.
fn probe(file: &File, from: u64, hi: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
    let mut pos = if from == 0 {
        0
    } else {
        match find_newline(file, from - 1, hi.min(end))? {
            Some(nl) => nl + 1,
            None => return Ok(None),
        }
    };
    while pos < hi {
        match seq_at(file, pos, end)? {
            LineSeq::Seq(seq) => return Ok(Some((pos, seq))),
            LineSeq::Unreadable { next } => pos = next,
        }
    }
    Ok(None)
}

enum LineSeq {
    Seq(u64),
    /// Not a record; the next line starts at `next`.
    Unreadable {
        next: u64,
    },
}

/// The seq of the line starting at `pos`: from its first bytes when written seq first,
/// else by parsing the whole line.
fn seq_at(file: &File, pos: u64, end: u64) -> io::Result<LineSeq> {
    let mut head = vec![0u8; PREFIX.min((end - pos) as usize)];
    file.read_exact_at(&mut head, pos)?;
    if let Some(seq) = prefix_seq(&head) {
        return Ok(LineSeq::Seq(seq));
    }
    let nl = find_newline(file, pos, end)?.unwrap_or(end);
    let mut line = vec![0u8; (nl - pos) as usize];
    file.read_exact_at(&mut line, pos)?;
    let next = (nl + 1).min(end);
    Ok(
        match serde_json::from_slice::<Value>(&line)
            .ok()
            .and_then(|v| v.get("seq").and_then(Value::as_u64))
        {
            Some(seq) => LineSeq::Seq(seq),
            None => LineSeq::Unreadable { next },
        },
    )
}

/// The offset of the first `\n` in `[from, until)`.
fn find_newline(file: &File, from: u64, until: u64) -> io::Result<Option<u64>> {
    let mut pos = from;
    let mut buf = vec![0u8; 4096];
    while pos < until {
        let n = (buf.len() as u64).min(until - pos) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
            return Ok(Some(pos + i as u64));
        }
        pos += n as u64;
        if buf.len() < CHUNK as usize {
            buf.resize(buf.len() * 2, 0);
        }
    }
    Ok(None)
}

/// The seq of the last readable line, reading backwards from `len`.
fn last_seq(file: &File, len: u64) -> io::Result<Option<u64>> {
    let mut end = len;
    while end > 0 {
        // The line ending at `end` (exclusive of its newline) starts after the previous one.
        let body_end = end - 1;
        let start = match rfind_newline(file, body_end)? {
            Some(nl) => nl + 1,
            None => 0,
        };
        if let LineSeq::Seq(seq) = seq_at(file, start, len)? {
            return Ok(Some(seq));
        }
        end = start;
    }
    Ok(None)
}

/// The offset of the last `\n` before `before`.
fn rfind_newline(file: &File, before: u64) -> io::Result<Option<u64>> {
    let mut end = before;
    let mut buf = vec![0u8; 4096];
    while end > 0 {
        let n = (buf.len() as u64).min(end) as usize;
        let start = end - n as u64;
        file.read_exact_at(&mut buf[..n], start)?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
        if buf.len() < CHUNK as usize {
            buf.resize(buf.len() * 2, 0);
        }
    }
    Ok(None)
}

/// The records in the last `max_bytes` of `file` (up to `len`), oldest first.
fn tail_of(file: &File, len: u64, max_bytes: u64) -> Vec<Value> {
    let window = len.min(max_bytes);
    let mut buf = vec![0u8; window as usize];
    if file.read_exact_at(&mut buf, len - window).is_err() {
        return Vec::new();
    }
    let mut lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
    if window < len && !lines.is_empty() {
        // The window starts inside a line.
        lines.remove(0);
    }
    lines
        .into_iter()
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter(|v| v.get("seq").and_then(Value::as_u64).is_some())
        .collect()
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
