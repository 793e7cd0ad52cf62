//! A streaming writer of `newc` cpio archives, the format the kernel unpacks
//! as an initramfs.
//!
//! Hand-written because it is small and specific: the crates that exist
//! either buffer whole entries in memory or cannot write device nodes. File
//! contents are copied from their source straight into the output, so an
//! archive of any size needs constant memory.

use std::io::{self, Read, Write};

pub use virtrun_protocol::newc::mode;
use virtrun_protocol::newc::{MAGIC, TRAILER};

/// Writes entries one after another; call [`Writer::finish`] at the end.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

/// The fields of one header that vary between entries.
struct Header<'a> {
    name: &'a str,
    mode: u32,
    size: u64,
    nlink: u32,
    rdev: (u32, u32),
}

impl<W: Write> Writer<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.offset += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.offset % 4) as usize) % 4;
        self.write_all(&[0; 3][..pad])
    }

    fn header(&mut self, h: Header<'_>) -> io::Result<()> {
        let size = u32::try_from(h.size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: larger than 4 GiB, which newc cannot hold", h.name),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let header = format!(
            "{MAGIC}{ino:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            h.mode,
            0, // uid
            0, // gid
            h.nlink,
            0, // mtime: archives are reproducible
            0, // devmajor
            0, // devminor
            h.rdev.0,
            h.rdev.1,
            h.name.len() + 1,
            0, // check
        );
        self.write_all(header.as_bytes())?;
        self.write_all(h.name.as_bytes())?;
        self.write_all(&[0])?;
        self.pad()
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.header(Header {
            name,
            mode: mode::DIR | perm,
            size: 0,
            nlink: 2,
            rdev: (0, 0),
        })
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.header(Header {
            name,
            mode: mode::SYMLINK | 0o777,
            size: target.len() as u64,
            nlink: 1,
            rdev: (0, 0),
        })?;
        self.write_all(target.as_bytes())?;
        self.pad()
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.header(Header {
            name,
            mode: mode::CHAR | perm,
            size: 0,
            nlink: 1,
            rdev: (major, minor),
        })
    }

    /// A regular file of `size` bytes read from `content`. Fails if the
    /// source does not deliver exactly `size` bytes (a file that changed
    /// while being packed), since the archive would be corrupt.
    pub fn file(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        content: &mut impl Read,
    ) -> io::Result<()> {
        self.header(Header {
            name,
            mode: mode::FILE | perm,
            size,
            nlink: 1,
            rdev: (0, 0),
        })?;
        let copied = io::copy(&mut content.take(size), &mut self.out)?;
        self.offset += copied;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: expected {size} bytes, got {copied}"),
            ));
        }
        self.pad()
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(Header {
            name: TRAILER,
            mode: 0,
            size: 0,
            nlink: 1,
            rdev: (0, 0),
        })?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One entry read back from an archive (for tests and diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// Path inside the archive.
    pub name: String,
    /// Inode number.
    pub ino: u32,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Device numbers of a device node.
    pub rdev: (u32, u32),
    /// File content or symlink target.
    pub data: Vec<u8>,
}

/// Parses a whole `newc` archive held in memory, up to its trailer.
pub fn read_archive(mut data: &[u8]) -> io::Result<Vec<ReadEntry>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut entries = Vec::new();
    let mut offset = 0usize;
    loop {
        let header = data.get(..110).ok_or_else(|| bad("short header"))?;
        if &header[..6] != MAGIC.as_bytes() {
            return Err(bad("bad magic"));
        }
        let field = |i: usize| -> io::Result<u32> {
            let hex =
                std::str::from_utf8(&header[6 + i * 8..14 + i * 8]).map_err(|_| bad("hex"))?;
            u32::from_str_radix(hex, 16).map_err(|_| bad("hex"))
        };
        let (ino, mode, size, namesize) = (
            field(0)?,
            field(1)?,
            field(6)? as usize,
            field(11)? as usize,
        );
        let rdev = (field(9)?, field(10)?);
        let name_end = 110 + namesize;
        let name_bytes = data
            .get(110..name_end - 1)
            .ok_or_else(|| bad("short name"))?;
        let name = String::from_utf8(name_bytes.to_vec()).map_err(|_| bad("name"))?;
        let data_start = (offset + name_end).next_multiple_of(4) - offset;
        let data_end = data_start + size;
        let content = data
            .get(data_start..data_end)
            .ok_or_else(|| bad("short data"))?;
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(ReadEntry {
            name,
            ino,
            mode,
            rdev,
            data: content.to_vec(),
        });
        let next = (offset + data_end).next_multiple_of(4) - offset;
        offset += next;
        data = data.get(next..).ok_or_else(|| bad("short padding"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn round_trip_all_entry_kinds() {
        let mut w = Writer::new(Vec::new());
        w.dir("data", 0o755).unwrap();
        let content: Vec<u8> = (0..=255).collect();
        w.file("data/x", 0o644, 256, &mut &content[..]).unwrap();
        w.file("e", 0o600, 0, &mut io::empty()).unwrap();
        w.symlink("lib64", "/lib").unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let archive = w.finish().unwrap();
        assert_eq!(archive.len() % 4, 0);

        let entries = read_archive(&archive).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["data", "data/x", "e", "lib64", "dev/console"]);
        assert_eq!(entries[0].mode, mode::DIR | 0o755);
        assert_eq!(entries[1].data, content);
        assert_eq!(entries[1].mode, mode::FILE | 0o644);
        assert!(entries[2].data.is_empty());
        assert_eq!(entries[3].data, b"/lib");
        assert_eq!(entries[3].mode & 0o170000, mode::SYMLINK);
        assert_eq!(entries[4].rdev, (5, 1));
        let mut inos: Vec<_> = entries.iter().map(|e| e.ino).collect();
        inos.dedup();
        assert_eq!(inos.len(), entries.len(), "inodes are unique");
    }

    /// What this writer packs, the guest init's reader unpacks
    /// (`virtrun_sysinit::cpio`), in small and large reads alike.
    #[test]
    fn the_guest_unpacks_what_the_host_packs() {
        use std::os::unix::fs::PermissionsExt;
        use virtrun_sysinit::disk::{ChunkReader, buffer};
        let mut w = Writer::new(Vec::new());
        w.dir("data", 0o755).unwrap();
        let big: Vec<u8> = (0..3 << 20).map(|i| (i * 7 % 251) as u8).collect();
        w.file("data/big", 0o755, big.len() as u64, &mut &big[..])
            .unwrap();
        w.file("data/empty", 0o600, 0, &mut io::empty()).unwrap();
        // Bits a usual umask (022) takes away at creation.
        w.file("data/shared", 0o666, 1, &mut &b"s"[..]).unwrap();
        w.symlink("lib64", "/lib").unwrap();
        let archive = w.finish().unwrap();
        for piece in [1, 4096, 1 << 20] {
            let root = tempfile::tempdir().unwrap();
            // A source that hands out at most `piece` bytes per read.
            struct Pieces<'a>(&'a [u8], usize);
            impl io::Read for Pieces<'_> {
                fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                    let n = self.0.len().min(out.len()).min(self.1);
                    out[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            // Twice: the second time every file exists already.
            for _ in 0..2 {
                let source = Pieces(&archive, piece);
                let reader = ChunkReader::new(source, archive.len() as u64, buffer());
                let paths = virtrun_sysinit::cpio::unpack(reader, root.path()).unwrap();
                let want = ["data", "data/big", "data/empty", "data/shared", "lib64"]
                    .map(|p| root.path().join(p));
                assert_eq!(paths, want);
            }
            let got = std::fs::read(root.path().join("data/big")).unwrap();
            assert!(got == big, "{piece}: data/big differs");
            let mode = |p: &str| {
                let meta = std::fs::metadata(root.path().join(p)).unwrap();
                meta.permissions().mode() & 0o7777
            };
            assert_eq!(mode("data/big"), 0o755);
            assert_eq!(mode("data/empty"), 0o600);
            assert_eq!(mode("data/shared"), 0o666);
            let link = std::fs::read_link(root.path().join("lib64")).unwrap();
            assert_eq!(link, Path::new("/lib"));
        }
    }

    #[test]
    fn the_guest_refuses_names_that_leave_its_root() {
        for name in ["../escape", "a/../../b", "/abs/x"] {
            let mut w = Writer::new(Vec::new());
            w.file(name, 0o644, 1, &mut &b"x"[..]).unwrap();
            let archive = w.finish().unwrap();
            let root = tempfile::tempdir().unwrap();
            let reader = io::BufReader::new(&archive[..]);
            let err = virtrun_sysinit::cpio::unpack(reader, &root.path().join("r")).unwrap_err();
            assert!(err.to_string().contains("leaves the root"), "{name}: {err}");
        }
    }

    #[test]
    fn short_source_is_an_error() {
        let mut w = Writer::new(Vec::new());
        let err = w.file("f", 0o644, 10, &mut &b"abc"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn long_source_is_cut_at_the_declared_size() {
        let mut w = Writer::new(Vec::new());
        w.file("f", 0o644, 2, &mut &b"abcdef"[..]).unwrap();
        let entries = read_archive(&w.finish().unwrap()).unwrap();
        assert_eq!(entries[0].data, b"ab");
    }
}
