//! The bytes of a standalone init's ports 1, 2, … as the init wrote them.
//!
//! Every such port is a tty in the guest. An init that made it raw announces
//! it with [`RAW_PORT_PREAMBLE`], and what follows is passed on unchanged.
//! Inits built with the original's Go `sysinit` leave the tty in its default
//! mode, which turns each `\n` written into `\r\n` (`ONLCR`; a default tty
//! changes nothing else on output): [`PortReader`] turns each `\r\n` back into
//! `\n`, which restores the written bytes exactly — go test's cover profile
//! must begin with `mode: set\n` to the byte, and a CPU profile is binary.
//!
//! The original's later releases changed that (see
//! [`crate::inspect::gobuild`]): v0.15.0 to v0.15.3 write a base64 stream,
//! decoded here with its line breaks ignored; from v0.15.4 on the ports are
//! raw and carry the bytes exactly.

use crate::inspect::gobuild::PortEncoding;
use std::io::{self, Read};
use virtrun_protocol::RAW_PORT_PREAMBLE;

/// What a port turned out to be.
#[derive(Debug)]
enum Mode {
    /// Not known yet: the bytes so far are a beginning of the preamble.
    Undecided(Vec<u8>),
    /// Announced raw: passed on as it is.
    Raw,
    /// A tty in its default mode; `cr` is a `\r` held back at the end of the
    /// last input, which the next byte decides about.
    Cooked {
        /// A `\r` was the last byte seen.
        cr: bool,
    },
    /// A base64 stream.
    Base64(Base64),
}

/// Undoes a guest tty's output processing, fed chunk by chunk.
#[derive(Debug)]
pub struct Untty {
    mode: Mode,
}

impl Default for Untty {
    fn default() -> Self {
        Untty::new(PortEncoding::Tty)
    }
}

impl Untty {
    /// Undoes what an init of `encoding` does to its ports.
    pub fn new(encoding: PortEncoding) -> Self {
        let mode = match encoding {
            PortEncoding::Tty => Mode::Undecided(Vec::new()),
            PortEncoding::Base64 => Mode::Base64(Base64::default()),
            PortEncoding::Raw => Mode::Raw,
        };
        Untty { mode }
    }

    /// Appends to `out` what `input`, the next bytes of the port, stands for.
    /// Up to the length of the preamble may be held back until the next call.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if let Mode::Undecided(seen) = &mut self.mode {
            let take = (RAW_PORT_PREAMBLE.len() - seen.len()).min(input.len());
            seen.extend_from_slice(&input[..take]);
            input = &input[take..];
            if !RAW_PORT_PREAMBLE.starts_with(seen) {
                let seen = std::mem::take(seen);
                self.mode = Mode::Cooked { cr: false };
                self.push(&seen, out);
            } else if seen.len() == RAW_PORT_PREAMBLE.len() {
                self.mode = Mode::Raw;
            } else {
                return;
            }
        }
        match &mut self.mode {
            Mode::Raw => out.extend_from_slice(input),
            Mode::Cooked { cr } => cook(cr, input, out),
            Mode::Base64(state) => state.push(input, out),
            Mode::Undecided(_) => unreachable!("decided above"),
        }
    }

    /// Appends what is still held back once the port ended.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.mode, Mode::Raw) {
            // A beginning of the preamble has no `\r` to undo.
            Mode::Undecided(seen) => out.extend_from_slice(&seen),
            Mode::Cooked { cr: true } => out.push(b'\r'),
            // Bits short of a byte are padding.
            Mode::Cooked { cr: false } | Mode::Raw | Mode::Base64(_) => {}
        }
    }
}

/// A streaming decoder of standard base64 (RFC 4648, with padding) that
/// skips line breaks and anything else outside the alphabet, as the
/// original's host does. Decoding ends at padding, as a stream's end.
#[derive(Debug, Default)]
struct Base64 {
    /// Bits not yet a whole byte, in the low `held` bits.
    bits: u32,
    held: u32,
    padded: bool,
}

impl Base64 {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &c in input {
            let value = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => {
                    self.padded = true;
                    continue;
                }
                _ => continue,
            };
            if self.padded {
                continue;
            }
            self.bits = (self.bits << 6) | u32::from(value);
            self.held += 6;
            if self.held >= 8 {
                self.held -= 8;
                out.push((self.bits >> self.held) as u8);
                self.bits &= (1 << self.held) - 1;
            }
        }
    }
}

/// Appends `input` with each `\r\n` turned into `\n`; `cr` carries a `\r`
/// at the end of one input over to the next.
fn cook(cr: &mut bool, mut input: &[u8], out: &mut Vec<u8>) {
    if std::mem::take(cr) {
        match input.first() {
            None => {
                *cr = true;
                return;
            }
            Some(b'\n') => {}
            Some(_) => out.push(b'\r'),
        }
    }
    while let Some(i) = memchr::memchr(b'\r', input) {
        out.extend_from_slice(&input[..i]);
        match input.get(i + 1) {
            Some(b'\n') => {}
            Some(_) => out.push(b'\r'),
            None => {
                *cr = true;
                return;
            }
        }
        input = &input[i + 1..];
    }
    out.extend_from_slice(input);
}

/// A port's bytes as the init wrote them, read from what arrived.
pub struct PortReader<R> {
    inner: R,
    untty: Untty,
    chunk: Vec<u8>,
    ready: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl<R: Read> PortReader<R> {
    /// Reads the port that `inner` receives from an init of `encoding`.
    pub fn new(inner: R, encoding: PortEncoding) -> Self {
        PortReader {
            inner,
            untty: Untty::new(encoding),
            chunk: vec![0; 256 * 1024],
            ready: Vec::new(),
            pos: 0,
            ended: false,
        }
    }
}

impl<R: Read> Read for PortReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.ready.len() {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            self.ready.clear();
            self.pos = 0;
            let n = self.inner.read(&mut self.chunk)?;
            if n == 0 {
                self.untty.finish(&mut self.ready);
                self.ended = true;
            } else {
                self.untty.push(&self.chunk[..n], &mut self.ready);
            }
        }
        let n = buf.len().min(self.ready.len() - self.pos);
        buf[..n].copy_from_slice(&self.ready[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a tty in its default mode makes of `written`.
    fn onlcr(written: &[u8]) -> Vec<u8> {
        written
            .iter()
            .flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect()
    }

    /// `arrived` decoded when it comes in pieces of `size` bytes.
    fn decoded(arrived: &[u8], size: usize) -> Vec<u8> {
        decoded_as(PortEncoding::Tty, arrived, size)
    }

    fn decoded_as(encoding: PortEncoding, arrived: &[u8], size: usize) -> Vec<u8> {
        let mut untty = Untty::new(encoding);
        let mut out = Vec::new();
        for piece in arrived.chunks(size) {
            untty.push(piece, &mut out);
        }
        untty.finish(&mut out);
        out
    }

    /// Every way of cutting `arrived` into pieces of one size gives `want`.
    fn assert_decodes(arrived: &[u8], want: &[u8]) {
        for size in 1..=arrived.len().max(1) {
            assert_eq!(
                decoded(arrived, size),
                want,
                "arrived {arrived:?} in pieces of {size}"
            );
        }
    }

    #[test]
    fn a_tty_in_default_mode_is_undone_exactly() {
        for written in [
            &b"mode: set\nx.go:1.2,3.4 1 1\n"[..],
            b"",
            b"\n",
            b"\r",
            b"\r\n",
            b"a\rb\r\r\nc\n\r",
            b"no newline",
            b"\0\0\x01",
            b"\0virtrun raw",
            b"\0virtrun raw port\n",
        ] {
            assert_decodes(&onlcr(written), written);
        }
    }

    #[test]
    fn an_announced_raw_port_passes_unchanged() {
        for written in [&b""[..], b"a\r\nb\n", b"\r", b"\0virtrun raw port\0"] {
            let mut arrived = RAW_PORT_PREAMBLE.to_vec();
            arrived.extend_from_slice(written);
            assert_decodes(&arrived, written);
        }
    }

    #[test]
    fn a_lone_cr_stays() {
        assert_decodes(b"a\rb", b"a\rb");
        assert_decodes(b"a\r", b"a\r");
    }

    #[test]
    fn reader_gives_what_the_decoder_does() {
        let mut arrived = RAW_PORT_PREAMBLE.to_vec();
        arrived.extend((0..=255u8).cycle().take(600_000));
        let mut got = Vec::new();
        PortReader::new(&arrived[..], PortEncoding::Tty)
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == arrived[RAW_PORT_PREAMBLE.len()..]);

        let written: Vec<u8> = (0..=255u8).cycle().take(600_000).collect();
        let mut got = Vec::new();
        PortReader::new(&onlcr(&written)[..], PortEncoding::Tty)
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == written);
    }

    /// Every byte value, and the line endings a tty would rewrite.
    fn tricky() -> Vec<u8> {
        let mut written = b"a\r\nb\r\r\nc\n\0".to_vec();
        written.extend(0..=255u8);
        written
    }

    #[test]
    fn a_raw_port_of_a_new_original_passes_unchanged() {
        let written = tricky();
        for size in [1, 3, 7, 1000] {
            assert_eq!(decoded_as(PortEncoding::Raw, &written, size), written);
        }
        // No preamble is looked for.
        let preamble = RAW_PORT_PREAMBLE.to_vec();
        assert_eq!(decoded_as(PortEncoding::Raw, &preamble, 2), preamble);
    }

    #[test]
    fn a_base64_port_is_decoded_across_line_breaks() {
        // What a v0.15.0-v0.15.3 init's port carries (Go's base64 of
        // tricky(), broken into lines, each \n sent as \r\n), made by
        // `base64 -w 76` of the same bytes.
        let encoded = "YQ0KYg0NCmMKAAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0u\r\n\
            LzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2BhYmNkZWZn\r\n\
            aGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp+g\r\n\
            oaKjpKWmp6ipqqusra6vsLGys7S1tre4ubq7vL2+v8DBwsPExcbHyMnKy8zNzs/Q0dLT1NXW19jZ\r\n\
            2tvc3d7f4OHi4+Tl5ufo6err7O3u7/Dx8vP09fb3+Pn6+/z9/v8=\r\n";
        for size in 1..=9 {
            assert_eq!(
                decoded_as(PortEncoding::Base64, encoded.as_bytes(), size),
                tricky(),
                "pieces of {size}"
            );
        }
        assert_eq!(decoded_as(PortEncoding::Base64, b"", 1), b"");
        assert_eq!(decoded_as(PortEncoding::Base64, b"YQ==", 1), b"a");
        assert_eq!(decoded_as(PortEncoding::Base64, b"YWI=", 2), b"ab");
    }
}
