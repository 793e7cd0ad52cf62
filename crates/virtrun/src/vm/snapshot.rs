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
//! A snapshot is written unnamed and linked read-only into the cache when
//! QEMU finished it; a run killed meanwhile leaves nothing. Restores open it
//! read-only, so any number of runs share it.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// How long a guest whose snapshots failed to restore twice stays cold.
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
        let again = self.failed_marker().exists();
        let _ = std::fs::write(self.failed_marker(), if again { "2" } else { "1" });
        if let (Ok(bad), Ok(now)) = (bad.metadata(), std::fs::metadata(&self.path))
            && (bad.dev(), bad.ino()) == (now.dev(), now.ino())
        {
            let _ = std::fs::remove_file(&self.path);
        }
        again
    }

    /// Whether restoring this guest failed twice in a row, within the last
    /// [`GIVE_UP_FOR`]: a failure that came from outside (QEMU killed, the
    /// host out of memory) does not keep a guest cold for good.
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

    /// A snapshot to be written now, unnamed until [`Pending::commit`].
    pub fn pending(&self) -> io::Result<Pending> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        Ok(Pending {
            file: crate::scratch::tmpfile_in(dir)?,
            path: self.path.clone(),
        })
    }
}

/// A snapshot being written: QEMU writes to the file through an inherited
/// fd; it has no name until it is complete.
#[derive(Debug)]
pub struct Pending {
    file: File,
    path: PathBuf,
}

impl Pending {
    /// The file QEMU writes to.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Makes the complete snapshot read-only and gives it its name; a
    /// snapshot a run in parallel made first is kept. Not synced to disk:
    /// one that a crash of the host damaged fails to restore, and a cold
    /// boot replaces it.
    pub fn commit(self) -> io::Result<PathBuf> {
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
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::new(dir.path(), Path::new("sh"), &argv(&["x"]), &[]);
        assert!(id.open().is_none());
        let pending = id.pending().unwrap();
        pending.file().write_all(b"state").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let path = pending.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"state");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        let file = id.open().unwrap();
        assert!(!id.discard(&file), "a first failure");
        assert!(!path.exists());
        assert!(!id.given_up());
        // Made again, and it fails again: given up on.
        let again = id.pending().unwrap();
        again.commit().unwrap();
        assert!(id.discard(&id.open().unwrap()), "a second failure");
        assert!(id.given_up());
        // A day later it is tried again.
        let marker = File::open(id.failed_marker()).unwrap();
        let day_ago = std::time::SystemTime::now() - GIVE_UP_FOR;
        marker.set_modified(day_ago).unwrap();
        assert!(!id.given_up());
    }
}
