//! Reading the event log by seq: the files a `since` request needs ([`Source`]), the
//! binary search over byte offsets that finds the first line after `since` in the first
//! of them, and the reader that yields the lines from there in order. Reads are
//! positional (`pread`), so a duplicate handle of the file being appended to is read
//! without disturbing its writer, and each search step reads a line's first bytes only
//! (lines are written seq first; others are parsed whole).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde_json::Value;

/// Below this many bytes the binary search gives way to reading lines in order.
const SCAN_BYTES: u64 = 16 * 1024;
/// Read size when scanning for line ends and when reading lines in order.
const CHUNK: u64 = 64 * 1024;
/// Bytes read at a line start to find a seq-first line's seq.
const PREFIX: usize = 32;
const SEQ_PREFIX: &[u8] = b"{\"seq\":";

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
    pub(super) file: File,
    pub(super) len: u64,
}

impl OpenFile {
    pub(super) fn open(path: &Path) -> io::Result<OpenFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(OpenFile { file, len })
    }
}

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
pub(super) fn probe(file: &File, from: u64, hi: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
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
pub(super) fn last_seq(file: &File, len: u64) -> io::Result<Option<u64>> {
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
pub(super) fn tail_of(file: &File, len: u64, max_bytes: u64) -> Vec<Value> {
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
