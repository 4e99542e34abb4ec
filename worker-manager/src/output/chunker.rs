//! Turns the bytes of an action's two streams into numbered text chunks:
//! one stream per chunk, at most `max` bytes, cut only at UTF-8 character
//! boundaries. A character split between two reads waits for its rest;
//! bytes that are not UTF-8 become U+FFFD.

use ick_api::work::{OutputChunk, Stream};

/// The chunker's state for one attempt.
pub struct Chunker {
    max: usize,
    next_seq: i64,
    pending: String,
    pending_stream: Stream,
    /// The start of a character whose rest has not arrived, per stream.
    carry: [Vec<u8>; 2],
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Chunker {
    /// Chunks of at most `max` bytes (at least 4, the longest character).
    pub fn new(max: usize) -> Self {
        Chunker {
            max: max.max(4),
            next_seq: 0,
            pending: String::new(),
            pending_stream: Stream::Stdout,
            carry: [Vec::new(), Vec::new()],
        }
    }

    /// How many chunks were made.
    pub fn count(&self) -> i64 {
        self.next_seq
    }

    /// Takes bytes read from `stream`; returns the chunks that are full.
    pub fn push(&mut self, stream: Stream, bytes: &[u8], out: &mut Vec<OutputChunk>) {
        if self.pending_stream != stream {
            self.flush(out);
            self.pending_stream = stream;
        }
        decode(&mut self.carry[index(stream)], bytes, &mut self.pending);
        while self.pending.len() >= self.max {
            let mut cut = self.max;
            while !self.pending.is_char_boundary(cut) {
                cut -= 1;
            }
            let rest = self.pending.split_off(cut);
            let full = std::mem::replace(&mut self.pending, rest);
            self.emit(full, out);
        }
    }

    /// Emits what is pending (a character still incomplete waits).
    pub fn flush(&mut self, out: &mut Vec<OutputChunk>) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            self.emit(text, out);
        }
    }

    /// The streams ended: emits everything, incomplete characters as U+FFFD.
    pub fn finish(&mut self, out: &mut Vec<OutputChunk>) {
        self.flush(out);
        for stream in [Stream::Stdout, Stream::Stderr] {
            let carry = std::mem::take(&mut self.carry[index(stream)]);
            if !carry.is_empty() {
                self.pending_stream = stream;
                self.emit(String::from_utf8_lossy(&carry).into_owned(), out);
            }
        }
    }

    fn emit(&mut self, data: String, out: &mut Vec<OutputChunk>) {
        out.push(OutputChunk {
            seq: self.next_seq,
            stream: self.pending_stream,
            data,
        });
        self.next_seq += 1;
    }
}

/// Appends the text of `carry` + `bytes` to `out`, keeping an incomplete
/// character at the end in `carry`.
fn decode(carry: &mut Vec<u8>, bytes: &[u8], out: &mut String) {
    let joined;
    let mut rest: &[u8] = if carry.is_empty() {
        bytes
    } else {
        carry.extend_from_slice(bytes);
        joined = std::mem::take(carry);
        &joined
    };
    loop {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                out.push_str(text);
                return;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &after[bad..];
                    }
                    None => {
                        carry.extend_from_slice(after);
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(chunks: &[OutputChunk], stream: Stream) -> String {
        chunks
            .iter()
            .filter(|c| c.stream == stream)
            .map(|c| c.data.as_str())
            .collect()
    }

    #[test]
    fn a_character_split_between_reads_is_kept_whole() {
        let mut c = Chunker::new(1024);
        let mut out = Vec::new();
        let bytes = "héllo ✓".as_bytes();
        for b in bytes {
            c.push(Stream::Stdout, &[*b], &mut out);
            c.flush(&mut out);
        }
        c.finish(&mut out);
        assert_eq!(text(&out, Stream::Stdout), "héllo ✓");
        assert!(out.iter().all(|c| !c.data.is_empty()));
    }

    #[test]
    fn chunks_are_cut_at_character_boundaries_and_numbered_in_order() {
        let mut c = Chunker::new(5);
        let mut out = Vec::new();
        c.push(Stream::Stdout, "ééééé".as_bytes(), &mut out);
        c.push(Stream::Stderr, b"err", &mut out);
        c.push(Stream::Stdout, b"x", &mut out);
        c.finish(&mut out);
        assert!(out.iter().all(|c| c.data.len() <= 5));
        assert_eq!(text(&out, Stream::Stdout), "éééééx");
        assert_eq!(text(&out, Stream::Stderr), "err");
        let seqs: Vec<i64> = out.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (0..out.len() as i64).collect::<Vec<_>>());
        assert_eq!(c.count(), out.len() as i64);
    }

    #[test]
    fn a_split_character_survives_a_switch_of_stream() {
        let mut c = Chunker::new(100);
        let mut out = Vec::new();
        let e = "é".as_bytes();
        c.push(Stream::Stdout, &[b'a', e[0]], &mut out);
        c.push(Stream::Stderr, b"E", &mut out);
        c.push(Stream::Stdout, &[e[1], b'b'], &mut out);
        c.finish(&mut out);
        assert_eq!(text(&out, Stream::Stdout), "aéb");
        assert_eq!(text(&out, Stream::Stderr), "E");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut c = Chunker::new(100);
        let mut out = Vec::new();
        c.push(Stream::Stdout, b"a\xffb\xc3", &mut out);
        c.finish(&mut out);
        assert_eq!(text(&out, Stream::Stdout), "a\u{fffd}b\u{fffd}");
    }
}
