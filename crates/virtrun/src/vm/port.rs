//! The bytes of a standalone init's ports 1, 2, … as the init wrote them.
//!
//! Every such port is a tty in the guest. An init that made it raw announces
//! it with [`RAW_PORT_PREAMBLE`], and what follows is passed on unchanged.
//! Inits built with the original's Go `sysinit` leave the tty in its default
//! mode, which turns each `\n` written into `\r\n` (`ONLCR`; a default tty
//! changes nothing else on output): [`PortReader`] turns each `\r\n` back into
//! `\n`, which restores the written bytes exactly — go test's cover profile
//! must begin with `mode: set\n` to the byte, and a CPU profile is binary.

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
}

/// Undoes a guest tty's output processing, fed chunk by chunk.
#[derive(Debug)]
pub struct Untty {
    mode: Mode,
}

impl Default for Untty {
    fn default() -> Self {
        Untty {
            mode: Mode::Undecided(Vec::new()),
        }
    }
}

impl Untty {
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
            Mode::Undecided(_) => unreachable!("decided above"),
        }
    }

    /// Appends what is still held back once the port ended.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.mode, Mode::Raw) {
            // A beginning of the preamble has no `\r` to undo.
            Mode::Undecided(seen) => out.extend_from_slice(&seen),
            Mode::Cooked { cr: true } => out.push(b'\r'),
            Mode::Cooked { cr: false } | Mode::Raw => {}
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
    /// Reads the port that `inner` receives.
    pub fn new(inner: R) -> Self {
        PortReader {
            inner,
            untty: Untty::default(),
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
        let mut untty = Untty::default();
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
        PortReader::new(&arrived[..]).read_to_end(&mut got).unwrap();
        assert!(got == arrived[RAW_PORT_PREAMBLE.len()..]);

        let written: Vec<u8> = (0..=255u8).cycle().take(600_000).collect();
        let mut got = Vec::new();
        PortReader::new(&onlcr(&written)[..])
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == written);
    }
}
