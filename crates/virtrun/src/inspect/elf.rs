//! ELF inspection: architecture, interpreter, needed libraries and search paths.
//!
//! Files are never read whole: the first 64 bytes are read to check the ELF
//! magic, then the file is memory-mapped and only the parts that matter (ELF
//! header, program headers, `PT_INTERP`, `PT_DYNAMIC` and the dynamic string
//! table) are parsed with goblin.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx};
use goblin::elf::dynamic::{DT_NEEDED, DT_RPATH, DT_RUNPATH};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{PT_INTERP, ProgramHeader};
use goblin::elf::{Dynamic, Elf};

/// A guest architecture virtrun can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86_64.
    Amd64,
    /// aarch64.
    Arm64,
    /// riscv64.
    Riscv64,
}

impl Arch {
    /// Maps an ELF `e_machine` to an architecture (`EM_X86_64`, `EM_AARCH64`,
    /// `EM_RISCV`); `None` for every other machine.
    ///
    /// The ELF class is not considered here; [`inspect`] only reports an
    /// architecture for 64-bit files.
    pub fn from_machine(e_machine: u16) -> Option<Arch> {
        match e_machine {
            header::EM_X86_64 => Some(Arch::Amd64),
            header::EM_AARCH64 => Some(Arch::Arm64),
            header::EM_RISCV => Some(Arch::Riscv64),
            _ => None,
        }
    }

    /// The ELF `e_machine` value of this architecture.
    pub fn machine(self) -> u16 {
        match self {
            Arch::Amd64 => header::EM_X86_64,
            Arch::Arm64 => header::EM_AARCH64,
            Arch::Riscv64 => header::EM_RISCV,
        }
    }

    /// The architecture virtrun itself was compiled for, if it is one of ours.
    pub fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::Amd64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Arm64)
        } else if cfg!(target_arch = "riscv64") {
            Some(Arch::Riscv64)
        } else {
            None
        }
    }

    /// The Debian-style name: `amd64`, `arm64` or `riscv64`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The ELF/kernel-style name: `x86_64`, `aarch64` or `riscv64`.
    pub fn elf_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
            Arch::Riscv64 => "riscv64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A readable name for an ELF `e_machine` value, e.g. `x86_64`, `aarch64`,
/// `i386`; `EM_<n>` for machines without a common name.
pub fn machine_name(e_machine: u16) -> String {
    let name = match e_machine {
        header::EM_X86_64 => "x86_64",
        header::EM_AARCH64 => "aarch64",
        header::EM_RISCV => "riscv64",
        header::EM_386 => "i386",
        header::EM_ARM => "arm",
        header::EM_PPC => "ppc",
        header::EM_PPC64 => "ppc64",
        header::EM_S390 => "s390x",
        header::EM_MIPS => "mips",
        header::EM_MIPS_RS3_LE => "mips-rs3-le",
        header::EM_SPARC => "sparc",
        header::EM_SPARCV9 => "sparc64",
        header::EM_IA_64 => "ia64",
        header::EM_68K => "m68k",
        header::EM_SH => "sh",
        header::EM_PARISC => "parisc",
        0x9026 => "alpha",
        header::EM_LOONGARCH => "loongarch",
        header::EM_BPF => "bpf",
        header::EM_XTENSA => "xtensa",
        header::EM_OPENRISC => "openrisc",
        header::EM_MICROBLAZE => "microblaze",
        header::EM_ARC_COMPACT => "arc",
        header::EM_AVR => "avr",
        _ => return format!("EM_{e_machine}"),
    };
    name.to_string()
}

/// What [`inspect`] found out about an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// The architecture, `None` for other machines and for 32-bit files
    /// (x32, riscv32); the caller decides whether that is an error.
    pub arch: Option<Arch>,
    /// The raw `e_machine`.
    pub machine: u16,
    /// `true` for ELFCLASS64.
    pub is_64: bool,
    /// The `PT_INTERP` path, if any.
    pub interpreter: Option<PathBuf>,
    /// The `DT_NEEDED` names, in order.
    pub needed: Vec<String>,
    /// The `DT_RPATH` entries split on `:` (empty entries dropped).
    pub rpath: Vec<String>,
    /// The `DT_RUNPATH` entries split on `:` (empty entries dropped).
    pub runpath: Vec<String>,
}

/// Why [`inspect`] failed. Each message is one line naming the path.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be opened, read or mapped.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: io::Error,
    },
    /// The file does not start with the ELF magic (or is not a regular file).
    #[error("{}: not an ELF file", path.display())]
    NotElf {
        /// The file.
        path: PathBuf,
    },
    /// The file starts with the ELF magic but cannot be parsed.
    #[error("{}: truncated or malformed ELF: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl ElfError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ElfError::Io { path, .. }
            | ElfError::NotElf { path }
            | ElfError::Malformed { path, .. } => path,
        }
    }
}

/// Reads the architecture, interpreter, needed libraries and search paths of
/// the ELF file at `path`.
///
/// Only the first 64 bytes are read; the rest is memory-mapped and parsed
/// lazily, so huge files cost no more than small ones.
pub fn inspect(path: &Path) -> Result<ElfInfo, ElfError> {
    let io_err = |error: io::Error| ElfError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        // Directories, FIFOs and devices: reading them could fail or block.
        return Err(ElfError::NotElf {
            path: path.to_path_buf(),
        });
    }
    let mut head = Vec::with_capacity(64);
    (&file).take(64).read_to_end(&mut head).map_err(io_err)?;
    if head.len() < header::SELFMAG || head[..header::SELFMAG] != header::ELFMAG[..] {
        return Err(ElfError::NotElf {
            path: path.to_path_buf(),
        });
    }
    let malformed = |detail: String| ElfError::Malformed {
        path: path.to_path_buf(),
        detail,
    };
    // Check the header on the bytes already read, so a short file is reported
    // as malformed before anything is mapped.
    Elf::parse_header(&head).map_err(|e| malformed(e.to_string()))?;
    // SAFETY: the mapping is private and read-only, and only ever read through
    // goblin's bounds-checked accessors. The remaining hazard of any file
    // mapping is another process truncating or rewriting the file while it is
    // mapped; the files inspected are binaries and libraries that are not
    // expected to change while virtrun runs, and the map lives only for the
    // duration of this call.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
    parse(&map).map_err(malformed)
}

/// Parses the parts of an ELF image that [`inspect`] reports.
fn parse(bytes: &[u8]) -> Result<ElfInfo, String> {
    let hdr: Header = Elf::parse_header(bytes).map_err(|e| e.to_string())?;
    let container = hdr.container().map_err(|e| e.to_string())?;
    let endian = hdr.endianness().map_err(|e| e.to_string())?;
    let ctx = Ctx::new(container, endian);
    let is_64 = container == Container::Big;

    let phdrs = if hdr.e_phnum == 0 {
        Vec::new()
    } else {
        ProgramHeader::parse(bytes, to_usize(hdr.e_phoff)?, usize::from(hdr.e_phnum), ctx)
            .map_err(|e| format!("program headers: {e}"))?
    };

    let mut interpreter = None;
    if let Some(ph) = phdrs.iter().find(|ph| ph.p_type == PT_INTERP) {
        let raw = slice(bytes, ph.p_offset, ph.p_filesz).ok_or("PT_INTERP outside the file")?;
        let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
        if raw.is_empty() {
            return Err("empty PT_INTERP".to_string());
        }
        interpreter = Some(PathBuf::from(OsStr::from_bytes(raw)));
    }

    let mut needed = Vec::new();
    let mut rpath = Vec::new();
    let mut runpath = Vec::new();
    let dynamic =
        Dynamic::parse(bytes, &phdrs, ctx).map_err(|e| format!("dynamic section: {e}"))?;
    if let Some(dynamic) = dynamic {
        let has_strings = dynamic
            .dyns
            .iter()
            .any(|d| matches!(d.d_tag, DT_NEEDED | DT_RPATH | DT_RUNPATH));
        if has_strings {
            let info = &dynamic.info;
            if info.strtab == 0 {
                return Err("DT_STRTAB missing or outside any PT_LOAD segment".to_string());
            }
            let strtab = slice(bytes, info.strtab as u64, info.strsz as u64)
                .ok_or("dynamic string table outside the file")?;
            for d in &dynamic.dyns {
                let list = match d.d_tag {
                    DT_NEEDED => &mut needed,
                    DT_RPATH => &mut rpath,
                    DT_RUNPATH => &mut runpath,
                    _ => continue,
                };
                let s = string_at(strtab, d.d_val)?;
                if d.d_tag == DT_NEEDED {
                    if s.is_empty() {
                        return Err("empty DT_NEEDED".to_string());
                    }
                    list.push(s);
                } else {
                    list.extend(s.split(':').filter(|p| !p.is_empty()).map(str::to_string));
                }
            }
        }
    }

    Ok(ElfInfo {
        arch: Arch::from_machine(hdr.e_machine).filter(|_| is_64),
        machine: hdr.e_machine,
        is_64,
        interpreter,
        needed,
        rpath,
        runpath,
    })
}

fn to_usize(v: u64) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("offset {v:#x} too large"))
}

/// `bytes[offset..offset + len]`, or `None` if that is not inside `bytes`.
fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// The NUL-terminated string at `offset` in the string table `strtab`.
fn string_at(strtab: &[u8], offset: u64) -> Result<String, String> {
    let rest = usize::try_from(offset)
        .ok()
        .and_then(|o| strtab.get(o..))
        .ok_or_else(|| format!("string offset {offset:#x} outside the dynamic string table"))?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format!("unterminated string at offset {offset:#x}"))?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("virtrun-elf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn bash_is_amd64_with_interpreter() {
        let info = inspect(Path::new("/usr/bin/bash")).unwrap();
        assert_eq!(info.arch, Some(Arch::Amd64));
        assert_eq!(info.machine, header::EM_X86_64);
        assert!(info.is_64);
        assert_eq!(
            info.interpreter.as_deref(),
            Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
        );
        assert!(info.needed.iter().any(|n| n == "libc.so.6"), "{info:?}");
        assert!(info.needed.iter().any(|n| n == "libtinfo.so.6"), "{info:?}");
    }

    #[test]
    fn libc_needs_the_interpreter() {
        let info = inspect(Path::new("/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
        assert_eq!(
            info.interpreter.as_deref(),
            Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
        );
        assert_eq!(info.needed, vec!["ld-linux-x86-64.so.2".to_string()]);
    }

    #[test]
    fn not_an_elf() {
        let err = inspect(Path::new("/etc/hostname")).unwrap_err();
        assert!(matches!(err, ElfError::NotElf { .. }), "{err:?}");
        assert_eq!(err.to_string(), "/etc/hostname: not an ELF file");
        let err = inspect(Path::new("/etc")).unwrap_err();
        assert!(matches!(err, ElfError::NotElf { .. }), "{err:?}");
    }

    #[test]
    fn missing_file_is_io_error() {
        let err = inspect(Path::new("/nonexistent/virtrun-test")).unwrap_err();
        assert!(matches!(err, ElfError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("/nonexistent/virtrun-test: "),
            "{err}"
        );
        assert_eq!(err.path(), Path::new("/nonexistent/virtrun-test"));
    }

    #[test]
    fn truncated_is_malformed() {
        let dir = temp_dir("truncated");
        let mut head = Vec::new();
        File::open("/usr/bin/bash")
            .unwrap()
            .take(100)
            .read_to_end(&mut head)
            .unwrap();
        for len in [4, 20, 63, 64, 100] {
            let p = dir.join(format!("bash-{len}"));
            std::fs::write(&p, &head[..len]).unwrap();
            let err = inspect(&p).unwrap_err();
            assert!(matches!(err, ElfError::Malformed { .. }), "{len}: {err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("{}: truncated or malformed ELF: ", p.display())),
                "{msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_after_magic_is_malformed_not_panic() {
        let dir = temp_dir("garbage");
        let mut bytes = std::fs::read("/usr/bin/true").unwrap();
        // Corrupt the program header offset and count in a few ways.
        for (i, patch) in [
            (0x20usize, 0xffu8),
            (0x38, 0xff),
            (0x21, 0x7f),
            (0x3a, 0x00),
        ]
        .iter()
        .enumerate()
        {
            bytes[patch.0] = patch.1;
            let p = dir.join(format!("bad-{i}"));
            std::fs::write(&p, &bytes).unwrap();
            let _ = inspect(&p);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn arch_names() {
        for arch in [Arch::Amd64, Arch::Arm64, Arch::Riscv64] {
            assert_eq!(Arch::from_machine(arch.machine()), Some(arch));
        }
        assert_eq!(Arch::from_machine(header::EM_386), None);
        assert_eq!(Arch::Amd64.name(), "amd64");
        assert_eq!(Arch::Arm64.elf_name(), "aarch64");
        assert_eq!(Arch::Riscv64.to_string(), "riscv64");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Arch::host(), Some(Arch::Amd64));
        }
        assert_eq!(machine_name(header::EM_386), "i386");
        assert_eq!(machine_name(header::EM_AARCH64), "aarch64");
        assert_eq!(machine_name(0x4242), "EM_16962");
    }
}
