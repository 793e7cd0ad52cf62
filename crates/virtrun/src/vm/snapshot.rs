//! Warm start: a guest booted once to its save point (parked, see
//! `crates/init`), saved to the cache, and restored for every later run of
//! the same guest identity.
//!
//! The identity is everything that must match for a restore to be valid:
//! the QEMU command line (machine, CPU, accelerator, memory, CPUs, devices,
//! kernel command line), the files it names or that went into the boot
//! archive — the kernel, QEMU itself, the module tree image, the boot
//! modules — by their metadata (device, inode, size, modification time),
//! and the build of the init and of virtrun. No file is hashed and QEMU is
//! not asked for its version: an identity costs a few `stat`s.
//!
//! A snapshot is one file: QEMU's migration stream of the device state at
//! its start, the guest's memory from [`MEMORY_OFFSET`] on. The guest that
//! is saved runs on that file from its boot (its memory is the file,
//! shared), so a save writes only the device state, a few hundred KB
//! (`x-ignore-shared`). A restore maps the memory privately from the file:
//! nothing is copied or zeroed, a page is read only when the guest touches
//! it and copied only when the guest writes it, where loading it would
//! have meant filling all of the guest's memory first.
//!
//! A snapshot is written unnamed and linked read-only into the cache when
//! QEMU finished it; a run killed meanwhile leaves nothing. Restores open it
//! read-only, so any number of runs share it.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the guest's memory starts in a snapshot file. The device state
/// before it takes a few hundred KB; the room up to here is a hole in the
/// file, and a state that would not fit makes no snapshot.
pub const MEMORY_OFFSET: u64 = 16 << 20;

/// Bumped when the layout of a snapshot file changes: part of every
/// identity.
const LAYOUT: &str = "snapshot layout 2: state, memory at 16 MiB";

/// QEMU arguments that make the guest's memory (`memory_mb`) the snapshot
/// file QEMU has as `fd`, from [`MEMORY_OFFSET`]: shared with the file for
/// a guest that is saved, a private copy-on-write mapping of it for a
/// restored one, which leaves the file as it is.
pub fn memory_args(fd: i32, memory_mb: u32, restore: bool) -> Vec<OsString> {
    let sharing = if restore {
        "share=off,readonly=on,rom=off"
    } else {
        "share=on"
    };
    [
        "-object".to_string(),
        format!(
            "memory-backend-file,id=vrmem,mem-path=/dev/fd/{fd},size={memory_mb}M,\
             offset={MEMORY_OFFSET},{sharing}"
        ),
        "-machine".into(),
        "memory-backend=vrmem".into(),
    ]
    .map(OsString::from)
    .to_vec()
}

/// Why `snapshot` cannot be restored into a guest of `memory_mb`, when
/// its length says it is cut short (QEMU would map memory past its end).
pub fn cut_short(snapshot: &File, memory_mb: u32) -> Option<String> {
    let want = MEMORY_OFFSET + (u64::from(memory_mb) << 20);
    match snapshot.metadata() {
        Ok(m) if m.len() >= want => None,
        Ok(m) => Some(format!(
            "the snapshot is cut short: {} of {want} bytes",
            m.len()
        )),
        Err(e) => Some(format!("the snapshot: {e}")),
    }
}

/// The source identity of the embedded inits.
const INIT_STAMP: &str = include_str!("../../guest/STAMP");

/// 64-bit FNV-1a: small, stable across builds and enough to tell identities
/// apart (it guards against mistakes, not attackers: the cache is the
/// user's own).
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }

    fn add_file(&mut self, path: &Path) {
        self.add(path.as_os_str().as_bytes());
        match std::fs::metadata(path) {
            Ok(m) => self.add(
                format!(
                    "{:x}:{:x}:{:x}:{:x}.{:x}",
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec()
                )
                .as_bytes(),
            ),
            Err(_) => self.add(b"missing"),
        }
    }
}

/// Where `program` is found: itself when it names a path, else the first
/// match on `PATH`.
fn find_program(program: &Path) -> PathBuf {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

/// How long a guest that failed twice to be saved or restored stays cold.
pub const GIVE_UP_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// One guest identity's snapshot in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The snapshot's path in the cache.
    pub path: PathBuf,
}

impl Identity {
    /// The identity of a guest started as `qemu argv`, booted from `files`
    /// (the kernel, the boot modules, the module tree image).
    pub fn new(cache: &Path, qemu: &Path, argv: &[OsString], files: &[&Path]) -> Identity {
        let mut h = Fnv::new();
        h.add(LAYOUT.as_bytes());
        h.add(INIT_STAMP.as_bytes());
        h.add_file(Path::new("/proc/self/exe"));
        if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
            h.add_file(&exe);
        }
        h.add_file(&find_program(qemu));
        for arg in argv {
            h.add(arg.as_bytes());
        }
        for file in files {
            h.add_file(file);
        }
        Identity {
            path: cache.join(format!("snapshot-{:016x}", h.0)),
        }
    }

    /// The snapshot, opened for a restore; `None` when there is none yet.
    /// Opening counts as a use, for the cache's order of eviction.
    pub fn open(&self) -> Option<File> {
        let file = File::open(&self.path).ok()?;
        crate::cache::touch(&self.path);
        Some(file)
    }

    /// Removes the snapshot that `bad` (opened with [`Identity::open`]) is,
    /// unless another run replaced it meanwhile, and notes that this guest
    /// failed to restore. Returns whether it had failed before: a snapshot
    /// that this QEMU makes but cannot restore is not made again and again.
    pub fn discard(&self, bad: &File) -> bool {
        let again = self.failed();
        if let (Ok(bad), Ok(now)) = (bad.metadata(), std::fs::metadata(&self.path))
            && (bad.dev(), bad.ino()) == (now.dev(), now.ino())
        {
            let _ = std::fs::remove_file(&self.path);
        }
        again
    }

    /// Notes that this guest failed to restore or to be saved; returns
    /// whether it had failed before (see [`Identity::given_up`]).
    pub fn failed(&self) -> bool {
        let again = self.failed_marker().exists();
        let _ = std::fs::write(self.failed_marker(), if again { "2" } else { "1" });
        again
    }

    /// Whether this guest failed twice in a row to be restored or saved,
    /// within the last [`GIVE_UP_FOR`]: a failure that came from outside
    /// (QEMU killed, the host out of memory) does not keep a guest cold for
    /// good.
    pub fn given_up(&self) -> bool {
        let marker = self.failed_marker();
        let recent = std::fs::metadata(&marker)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < GIVE_UP_FOR));
        recent && std::fs::read(marker).is_ok_and(|n| n == b"2")
    }

    /// Notes that this guest restored fine.
    pub fn restored(&self) {
        let _ = std::fs::remove_file(self.failed_marker());
    }

    fn failed_marker(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".failed");
        PathBuf::from(name)
    }

    /// A snapshot to be written now, unnamed until [`Pending::commit`],
    /// for a guest of `memory_mb`. Refused when the cache's file system
    /// has less room than that memory could take: the guest's memory is
    /// the file, and a page it could not be given would kill QEMU.
    pub fn pending(&self, memory_mb: u32) -> io::Result<Pending> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let need = MEMORY_OFFSET + (u64::from(memory_mb) << 20);
        let free = free_space(dir)?;
        if free < need + (need >> 3) {
            return Err(io::Error::other(format!(
                "{} MiB free in {}, a snapshot may take {} MiB",
                free >> 20,
                dir.display(),
                need >> 20
            )));
        }
        Ok(Pending {
            file: crate::scratch::tmpfile_in(dir)?,
            state: crate::scratch::tmpfile_in(dir)?,
            path: self.path.clone(),
        })
    }
}

/// The bytes an unprivileged user may still write in `dir`'s file system.
fn free_space(dir: &Path) -> io::Result<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: an all-zero statvfs is a valid value of the plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) fills `st`; the path is NUL-terminated and
    // outlives the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// A snapshot being made, unnamed until it is complete: the file the
/// guest's memory is (QEMU has it through an inherited fd from its start,
/// see [`memory_args`]), and a file of its own for the device state, which
/// QEMU writes when the guest is saved (it truncates the file it saves
/// to: never the memory's).
#[derive(Debug)]
pub struct Pending {
    file: File,
    state: File,
    path: PathBuf,
}

impl Pending {
    /// The file that is the guest's memory, and becomes the snapshot.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file QEMU saves the device state to.
    pub fn state(&self) -> &File {
        &self.state
    }

    /// Puts the device state before the memory, makes the complete
    /// snapshot read-only and gives it its name; a snapshot a run in
    /// parallel made first is kept. Not synced to disk: one that a crash
    /// of the host damaged fails to restore, and a cold boot replaces it.
    pub fn commit(self) -> io::Result<PathBuf> {
        use std::os::unix::fs::FileExt;
        let len = self.state.metadata()?.len();
        if len == 0 || len > MEMORY_OFFSET {
            return Err(io::Error::other(format!(
                "the device state takes {len} bytes, room is {MEMORY_OFFSET}"
            )));
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len {
            let n = self.state.read_at(&mut buf, at)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.file.write_all_at(&buf[..n], at)?;
            at += n as u64;
        }
        self.file
            .set_permissions(std::fs::Permissions::from_mode(0o444))?;
        crate::scratch::link(&self.file, &self.path)?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    #[test]
    fn identity_follows_the_command_line_and_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinuz");
        std::fs::write(&kernel, b"one").unwrap();
        let qemu = Path::new("sh");
        let id = |args: &[&str]| Identity::new(dir.path(), qemu, &argv(args), &[&kernel]);
        let base = id(&["-m", "256"]);
        assert_eq!(base, id(&["-m", "256"]));
        assert_ne!(base, id(&["-m", "512"]));
        assert_ne!(base, id(&["-m", "25", "6"]));
        // Same name, new content: a new identity.
        std::fs::remove_file(&kernel).unwrap();
        std::fs::write(&kernel, b"two!").unwrap();
        assert_ne!(base, id(&["-m", "256"]));
    }

    #[test]
    fn a_snapshot_is_named_only_when_complete_and_read_only() {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::new(dir.path(), Path::new("sh"), &argv(&["x"]), &[]);
        assert!(id.open().is_none());
        assert!(
            id.pending(u32::MAX).is_err(),
            "no room for a guest of 4 PiB"
        );
        let pending = id.pending(1).unwrap();
        // The guest's memory, of 1 MiB, then its device state.
        let memory_end = MEMORY_OFFSET + (1 << 20);
        pending.file().set_len(memory_end).unwrap();
        pending
            .file()
            .write_all_at(b"memory", MEMORY_OFFSET)
            .unwrap();
        pending.state().write_all(b"state").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let path = pending.commit().unwrap();
        let made = std::fs::read(&path).unwrap();
        assert_eq!(made.len() as u64, memory_end);
        assert_eq!(&made[..6], b"state\0");
        assert_eq!(&made[MEMORY_OFFSET as usize..][..6], b"memory");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        let file = id.open().unwrap();
        assert_eq!(cut_short(&file, 1), None);
        assert!(cut_short(&file, 2).unwrap().contains("cut short"));
        assert!(!id.discard(&file), "a first failure");
        assert!(!path.exists());
        assert!(!id.given_up());
        // Made again, and it fails again: given up on.
        let again = id.pending(1).unwrap();
        assert!(again.commit().is_err(), "no device state, no snapshot");
        let again = id.pending(1).unwrap();
        again.state().write_all(b"state").unwrap();
        again.commit().unwrap();
        assert!(id.discard(&id.open().unwrap()), "a second failure");
        assert!(id.given_up());
        // A day later it is tried again.
        let marker = File::open(id.failed_marker()).unwrap();
        let day_ago = std::time::SystemTime::now() - GIVE_UP_FOR;
        marker.set_modified(day_ago).unwrap();
        assert!(!id.given_up());
        // A guest that cannot be saved (a QEMU without what saving needs)
        // is given up on the same way.
        id.restored();
        assert!(!id.failed());
        assert!(id.failed());
        assert!(id.given_up());
    }
}
