//! The TZif format (RFC 8536) of the system's zoneinfo files: the transition table and the
//! POSIX TZ footer that covers every instant past it. Version 2+ files carry the table
//! twice; the 64-bit copy is the one read (the 32-bit one stops in 2038).

use super::posix::PosixTz;

/// What a zoneinfo file says: UTC transition instants, the offset in force from each, the
/// offset before the first, and the footer rule for after the last.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) transitions: Vec<i64>,
    /// `offsets[i]` is in force from `transitions[i]` (seconds east of UTC).
    pub(crate) offsets: Vec<i32>,
    pub(crate) initial: i32,
    pub(crate) footer: Option<PosixTz>,
}

/// Why bytes are not a usable TZif file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

struct Header {
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn read(b: &[u8]) -> Result<(u8, Header), Malformed> {
        if b.len() < 44 || &b[..4] != b"TZif" {
            return Err(Malformed("not a TZif file"));
        }
        let n = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let h = Header {
            isutcnt: n(20),
            isstdcnt: n(24),
            leapcnt: n(28),
            timecnt: n(32),
            typecnt: n(36),
            charcnt: n(40),
        };
        if h.typecnt == 0 {
            return Err(Malformed("no local time types"));
        }
        Ok((b[4], h))
    }

    fn data_len(&self, time_size: usize) -> usize {
        self.timecnt * (time_size + 1)
            + self.typecnt * 6
            + self.charcnt
            + self.leapcnt * (time_size + 4)
            + self.isstdcnt
            + self.isutcnt
    }
}

impl Table {
    pub(crate) fn parse(b: &[u8]) -> Result<Table, Malformed> {
        let (version, h1) = Header::read(b)?;
        let v1_end = 44 + h1.data_len(4);
        if version < b'2' {
            let data = b.get(44..v1_end).ok_or(Malformed("truncated data"))?;
            return Table::from_block(&h1, data, 4, None);
        }
        let rest = b.get(v1_end..).ok_or(Malformed("truncated data"))?;
        let (_, h2) = Header::read(rest)?;
        let v2_end = 44 + h2.data_len(8);
        let data = rest.get(44..v2_end).ok_or(Malformed("truncated data"))?;
        let footer = parse_footer(&rest[v2_end..])?;
        Table::from_block(&h2, data, 8, footer)
    }

    fn from_block(
        h: &Header,
        data: &[u8],
        time_size: usize,
        footer: Option<PosixTz>,
    ) -> Result<Table, Malformed> {
        let (times, rest) = data.split_at(h.timecnt * time_size);
        let (indices, rest) = rest.split_at(h.timecnt);
        let types: Vec<i32> = rest[..h.typecnt * 6]
            .chunks_exact(6)
            .map(|t| i32::from_be_bytes([t[0], t[1], t[2], t[3]]))
            .collect();
        let transitions: Vec<i64> = times
            .chunks_exact(time_size)
            .map(|t| match time_size {
                4 => i64::from(i32::from_be_bytes([t[0], t[1], t[2], t[3]])),
                _ => i64::from_be_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]),
            })
            .collect();
        if transitions.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Malformed("transitions out of order"));
        }
        let offsets = indices
            .iter()
            .map(|&i| {
                types
                    .get(usize::from(i))
                    .copied()
                    .ok_or(Malformed("bad type index"))
            })
            .collect::<Result<Vec<i32>, Malformed>>()?;
        if types.iter().any(|o| o.abs() >= 25 * 3600) {
            return Err(Malformed("offset out of range"));
        }
        Ok(Table {
            transitions,
            offsets,
            initial: types[0],
            footer,
        })
    }

    /// Seconds east of UTC at `utc_s`.
    pub(crate) fn offset_at(&self, utc_s: i64) -> i32 {
        match self.transitions.partition_point(|&t| t <= utc_s) {
            0 if self.transitions.is_empty() => match &self.footer {
                Some(f) => f.offset_at(utc_s),
                None => self.initial,
            },
            0 => self.initial,
            n if n == self.transitions.len() => match &self.footer {
                Some(f) => f.offset_at(utc_s),
                None => self.offsets[n - 1],
            },
            n => self.offsets[n - 1],
        }
    }
}

/// The footer is `\n<TZ string>\n`; an empty TZ string means "no rule".
fn parse_footer(b: &[u8]) -> Result<Option<PosixTz>, Malformed> {
    let text = std::str::from_utf8(b).map_err(|_| Malformed("footer is not text"))?;
    let Some(body) = text.strip_prefix('\n') else {
        return Ok(None);
    };
    let line = body.split('\n').next().unwrap_or("");
    if line.is_empty() {
        return Ok(None);
    }
    PosixTz::parse(line)
        .map(Some)
        .ok_or(Malformed("bad POSIX TZ footer"))
}
