//! Byte ranges in HTTP headers: `Range` on downloads (RFC 9110 §14) and
//! `Content-Range` on upload chunks (as the OCI distribution spec uses it).

use std::ops::Range;

/// One byte range asked for with `Range: bytes=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=A-B`: from A to B, both included.
    Bounded(u64, u64),
    /// `bytes=A-`: from A to the end.
    From(u64),
    /// `bytes=-N`: the last N bytes.
    Last(u64),
}

impl ByteRange {
    /// Parses a `Range` header. `Ok(None)` for what a server may ignore
    /// (another unit, several ranges); `Err` for a malformed bytes range.
    pub fn parse_header(value: &str) -> Result<Option<ByteRange>, String> {
        let value = value.trim();
        let Some(spec) = value.strip_prefix("bytes=") else {
            return Ok(None);
        };
        if spec.contains(',') {
            return Ok(None);
        }
        let bad = || format!("malformed Range header {value:?}");
        let (first, last) = spec.trim().split_once('-').ok_or_else(bad)?;
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, true) => Err(bad()),
            (true, false) => Ok(Some(ByteRange::Last(number(last)?))),
            (false, true) => Ok(Some(ByteRange::From(number(first)?))),
            (false, false) => {
                let (a, b) = (number(first)?, number(last)?);
                if b < a {
                    return Err(bad());
                }
                Ok(Some(ByteRange::Bounded(a, b)))
            }
        }
    }

    /// The bytes of a blob of `size` this range covers, or `None` if it
    /// covers none (a 416).
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::Bounded(a, b) if a < size => Some(a..b.min(size - 1) + 1),
            ByteRange::From(a) if a < size => Some(a..size),
            ByteRange::Last(n) if n > 0 && size > 0 => Some(size - n.min(size)..size),
            _ => None,
        }
    }

    /// The header value, e.g. `bytes=100-`.
    pub fn header(self) -> String {
        match self {
            ByteRange::Bounded(a, b) => format!("bytes={a}-{b}"),
            ByteRange::From(a) => format!("bytes={a}-"),
            ByteRange::Last(n) => format!("bytes=-{n}"),
        }
    }
}

/// The `Content-Range` of a `206` answer: `bytes A-B/SIZE`.
pub fn content_range(range: &Range<u64>, size: u64) -> String {
    format!(
        "bytes {}-{}/{size}",
        range.start,
        range.end.saturating_sub(1)
    )
}

/// Parses the `Content-Range` of a `206` answer into (range, size).
pub fn parse_content_range(value: &str) -> Option<(Range<u64>, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, size) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b, size) = (
        a.parse::<u64>().ok()?,
        b.parse::<u64>().ok()?,
        size.parse().ok()?,
    );
    (a <= b && b < size).then_some((a..b + 1, size))
}

/// Where an upload chunk goes: the `Content-Range` of a `PATCH
/// /uploads/{id}`, `START-END` (OCI) or `bytes START-END/TOTAL` (RFC 9110;
/// TOTAL may be `*`). END is inclusive; an empty chunk has no range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    /// Offset of the chunk's first byte.
    pub start: u64,
    /// Offset of its last byte.
    pub end: u64,
}

impl ChunkRange {
    /// The range of `len > 0` bytes at `start`.
    pub fn new(start: u64, len: u64) -> ChunkRange {
        ChunkRange {
            start,
            end: start + len.max(1) - 1,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never: a chunk range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses either form.
    pub fn parse(value: &str) -> Result<ChunkRange, String> {
        let bad = || {
            format!(
                "malformed Content-Range {value:?}: expected START-END or bytes START-END/TOTAL"
            )
        };
        let value = value.trim();
        let span = match value.strip_prefix("bytes ") {
            Some(rest) => rest.split_once('/').map(|(span, _)| span).ok_or_else(bad)?,
            None => value,
        };
        let (a, b) = span.split_once('-').ok_or_else(bad)?;
        let start = a.trim().parse::<u64>().map_err(|_| bad())?;
        let end = b.trim().parse::<u64>().map_err(|_| bad())?;
        if end < start {
            return Err(bad());
        }
        Ok(ChunkRange { start, end })
    }

    /// The OCI form, `START-END`.
    pub fn header(&self) -> String {
        format!("{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_parse_and_resolve_against_the_size() {
        let r = |s: &str| ByteRange::parse_header(s).expect(s).expect(s);
        assert_eq!(r("bytes=0-9").resolve(100), Some(0..10));
        assert_eq!(r("bytes=90-200").resolve(100), Some(90..100));
        assert_eq!(r("bytes=50-").resolve(100), Some(50..100));
        assert_eq!(r("bytes=-10").resolve(100), Some(90..100));
        assert_eq!(r("bytes=-1000").resolve(100), Some(0..100));
        assert_eq!(r("bytes=100-").resolve(100), None);
        assert_eq!(r("bytes=0-0").resolve(0), None);
        assert_eq!(r("bytes=-0").resolve(10), None);
        assert_eq!(ByteRange::parse_header("items=0-1"), Ok(None));
        assert_eq!(ByteRange::parse_header("bytes=0-1,5-6"), Ok(None));
        for bad in ["bytes=", "bytes=-", "bytes=a-b", "bytes=5-1", "bytes=1"] {
            assert!(ByteRange::parse_header(bad).is_err(), "{bad}");
        }
        assert_eq!(r(&ByteRange::From(7).header()), ByteRange::From(7));
    }

    #[test]
    fn content_range_round_trips() {
        let value = content_range(&(10..20), 100);
        assert_eq!(value, "bytes 10-19/100");
        assert_eq!(parse_content_range(&value), Some((10..20, 100)));
        assert_eq!(parse_content_range("bytes 10-200/100"), None);
    }

    #[test]
    fn chunk_ranges_accept_both_forms() {
        assert_eq!(
            ChunkRange::parse("0-99"),
            Ok(ChunkRange { start: 0, end: 99 })
        );
        assert_eq!(
            ChunkRange::parse("bytes 100-199/*"),
            Ok(ChunkRange::new(100, 100))
        );
        assert_eq!(
            ChunkRange::parse("bytes 100-199/1000").map(|r| r.len()),
            Ok(100)
        );
        for bad in ["", "5", "9-1", "bytes 1-2", "x-y"] {
            assert!(ChunkRange::parse(bad).is_err(), "{bad}");
        }
    }
}
