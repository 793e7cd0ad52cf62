//! The guest's virtio disks, found by the serial number the host gave them
//! (`-device virtio-blk-…,serial=…`): the kernel names disks in probe order,
//! which differs between transports (virtio-mmio slots are probed last to
//! first), so a name such as `/dev/vda` says nothing.

use crate::{ErrorContext, Result};
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a disk may take to appear after its driver loaded.
pub const DISK_WAIT: Duration = Duration::from_secs(5);

/// The device node of the disk with `serial`, waited for up to `wait`.
pub fn find(serial: &str, wait: Duration) -> Result<PathBuf> {
    let deadline = Instant::now() + wait;
    loop {
        let found = std::fs::read_dir("/sys/block").ok().and_then(|dir| {
            dir.flatten().find_map(|e| {
                let got = std::fs::read_to_string(e.path().join("serial")).ok()?;
                (got.trim_end() == serial).then(|| PathBuf::from("/dev").join(e.file_name()))
            })
        });
        match found {
            Some(dev) if dev.exists() => return Ok(dev),
            _ if Instant::now() >= deadline => {
                return Err(crate::Error::new(
                    format!("find the disk {serial:?} in {} s", wait.as_secs()),
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Size of one read: large, as each read of a disk is one request to the
/// host.
pub const CHUNK: usize = 1 << 20;
/// Alignment `O_DIRECT` wants of buffers (and offsets and sizes).
const ALIGN: usize = 4096;

/// Opens the disk at `path` to be read past the page cache (`O_DIRECT`):
/// under a restored guest the disk's contents changed since the kernel
/// cached any of it.
///
/// The disk's requests also skip the I/O scheduler: they are few and large,
/// and a restored guest would translate the scheduler's code anew in every
/// run. A kernel without the setting keeps its scheduler.
pub fn open_direct(path: &std::path::Path) -> Result<File> {
    if let Some(name) = path.file_name() {
        let setting = std::path::Path::new("/sys/block")
            .join(name)
            .join("queue/scheduler");
        let _ = std::fs::write(setting, "none");
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .context(|| format!("open {}", path.display()))
}

/// A buffer for a [`ChunkReader`], its pages touched now: a guest that is
/// saved after making it finds them in place when restored, where each
/// page fault of a fresh buffer would cost it dearly under emulation.
pub fn buffer() -> Vec<u8> {
    vec![1u8; CHUNK + ALIGN]
}

/// The first `len` bytes of a source, read in chunks of up to [`CHUNK`]
/// bytes into a buffer made beforehand ([`buffer`]), aligned for
/// `O_DIRECT`, and handed out from there ([`BufRead`]): no copy of its own.
pub struct ChunkReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    pos: usize,
    filled: usize,
    left: u64,
}

impl<R: Read> ChunkReader<R> {
    /// Reads the first `len` bytes of `inner`, from where it is.
    pub fn new(inner: R, len: u64, buf: Vec<u8>) -> ChunkReader<R> {
        let start = buf.as_ptr().align_offset(ALIGN);
        ChunkReader {
            inner,
            buf,
            start,
            pos: 0,
            filled: 0,
            left: len,
        }
    }
}

impl<R: Read> BufRead for ChunkReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.left == 0 {
            return Ok(&[]);
        }
        if self.pos == self.filled {
            let room = (self.buf.len() - self.start).min(CHUNK) / ALIGN * ALIGN;
            let chunk = &mut self.buf[self.start..self.start + room];
            let n = loop {
                match self.inner.read(chunk) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the run ended {} bytes early", self.left),
                ));
            }
            self.pos = 0;
            self.filled = n;
        }
        let n = (self.filled - self.pos).min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let from = self.start + self.pos;
        Ok(&self.buf[from..from + n])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.left -= n as u64;
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let data = self.fill_buf()?;
        let n = data.len().min(out.len());
        out[..n].copy_from_slice(&data[..n]);
        self.consume(n);
        Ok(n)
    }
}
