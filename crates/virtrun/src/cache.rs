//! virtrun's cache: where it is, and how large it may grow.
//!
//! What virtrun makes there — PVH `vmlinux` copies, module tree images,
//! guest snapshots — is made once per identity and then shared by every
//! run. Each file is written unnamed and linked when complete, so a run
//! never sees half of one. A file's access time, set explicitly (mounts may
//! not keep it), is the moment it was last used; its modification time stays
//! that of its making, which identities count. When the files together take more disk blocks than the cap
//! (`VIRTRUN_CACHE_MAX`, default [`DEFAULT_MAX`]), the least recently used
//! go first. Kernels pulled from registries (`images/kernels/<digest>/`,
//! see [`crate::inspect::registry`]) count as one entry each, last used
//! when a run last took it, and are never removed while a run holds its
//! lock. Kernels that `scripts/setup` fetched (`kernels/`) are not counted
//! and never removed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The cap when `VIRTRUN_CACHE_MAX` is not set: room for a few dozen
/// snapshots, module trees and kernels.
pub const DEFAULT_MAX: u64 = 4 << 30;

/// Prefixes of the files the cap governs.
const MANAGED: [&str; 3] = ["vmlinux-", "modules-", "snapshot-"];

/// virtrun's cache: `$VIRTRUN_CACHE`, else `$XDG_CACHE_HOME/virtrun`, else
/// `~/.cache/virtrun` (where `scripts/setup` also puts kernels); created on
/// demand.
pub fn dir() -> Option<PathBuf> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = env("VIRTRUN_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("virtrun")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/virtrun")))?;
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// Parses a size such as `2G`, `500M`, `64K` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The cap in bytes: `VIRTRUN_CACHE_MAX`, else [`DEFAULT_MAX`]; a value
/// that is not a size is an error.
pub fn max() -> Result<u64, String> {
    match std::env::var_os("VIRTRUN_CACHE_MAX") {
        None => Ok(DEFAULT_MAX),
        Some(v) => v.to_str().and_then(parse_size).ok_or_else(|| {
            format!(
                "VIRTRUN_CACHE_MAX={}: not a size (such as 2G, 500M or a number of bytes)",
                v.to_string_lossy()
            )
        }),
    }
}

/// `flock(2)` on `file` with `op` (`LOCK_SH`, `LOCK_EX`, with `LOCK_NB`
/// or not): the cache's locks, released when the file is closed.
pub fn flock(file: &std::fs::File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on an fd the caller owns; no memory involved.
    if unsafe { libc::flock(file.as_raw_fd(), op) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Marks `path` as used now, for the least-recently-used order.
pub fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.set_times(std::fs::FileTimes::new().set_accessed(SystemTime::now()));
    }
}

/// One thing the cap governs.
struct Entry {
    used: SystemTime,
    size: u64,
    path: PathBuf,
    /// A pulled kernel's lock: taken exclusively before its removal, which
    /// fails while a run holds it.
    lock: Option<PathBuf>,
}

/// Removes the least recently used files (and pulled kernels) until the
/// cache fits in `max` bytes of disk blocks; `keep` (what this run uses)
/// stays. A file another run has open stays readable to it until it closes
/// it. Returns what was removed.
pub fn enforce(dir: &Path, max: u64, keep: &[&Path]) -> Vec<PathBuf> {
    let mut entries = files(dir);
    entries.extend(pulled_kernels(dir));
    let mut total: u64 = entries.iter().map(|e| e.size).sum();
    entries.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    let mut removed = Vec::new();
    for entry in entries {
        if total <= max {
            break;
        }
        if keep.contains(&entry.path.as_path()) {
            continue;
        }
        let gone = match &entry.lock {
            None => std::fs::remove_file(&entry.path).is_ok(),
            Some(lock) => remove_unused(&entry.path, lock),
        };
        if gone {
            total -= entry.size;
            removed.push(entry.path);
        }
    }
    removed
}

/// The cache's own files the cap governs.
fn files(dir: &Path) -> Vec<Entry> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            MANAGED.iter().any(|p| name.starts_with(p))
        })
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some(Entry {
                used: meta.accessed().ok()?,
                size: meta.blocks() * 512,
                path: e.path(),
                lock: None,
            })
        })
        .collect()
}

/// The pulled kernels, each sized by its files' blocks and last used when
/// its lock was last taken.
fn pulled_kernels(dir: &Path) -> Vec<Entry> {
    let kernels = dir.join("images/kernels");
    let Ok(entries) = std::fs::read_dir(&kernels) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let path = e.path();
            let lock = path.with_extension("lock");
            let used = std::fs::metadata(&lock)
                .and_then(|m| m.accessed())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Entry {
                used,
                size: blocks(&path),
                path,
                lock: Some(lock),
            }
        })
        .collect()
}

/// What the files below `path` take on disk.
fn blocks(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    own + std::fs::read_dir(path)
        .map(|d| d.flatten().map(|e| blocks(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes the pulled kernel at `path` unless a run holds `lock`.
fn remove_unused(path: &Path, lock: &Path) -> bool {
    let Ok(file) = std::fs::File::create(lock) else {
        return false;
    };
    flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() && std::fs::remove_dir_all(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("2X"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn least_recently_used_go_first_and_blocks_count() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, len: usize, age: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![1u8; len]).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let used = SystemTime::now() - Duration::from_secs(age);
            file.set_times(std::fs::FileTimes::new().set_accessed(used))
                .unwrap();
            path
        };
        let old = make("snapshot-old", 64 << 10, 300);
        let mid = make("vmlinux-mid", 64 << 10, 200);
        let new = make("modules-new", 64 << 10, 100);
        let kept = make("snapshot-kept", 64 << 10, 400);
        let other = make("kvm-broken-x", 64 << 10, 500);
        // A sparse file counts by its blocks, not its length.
        let sparse = dir.path().join("snapshot-sparse");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        let removed = enforce(dir.path(), 150 << 10, &[&kept]);
        assert_eq!(removed, vec![old, mid]);
        assert!(new.exists() && kept.exists() && other.exists() && sparse.exists());
    }

    #[test]
    fn pulled_kernels_count_and_stay_while_used() {
        let dir = tempfile::tempdir().unwrap();
        let kernels = dir.path().join("images/kernels");
        let pulled = |name: &str, age: u64| {
            let k = kernels.join(name);
            std::fs::create_dir_all(k.join("boot")).unwrap();
            std::fs::write(k.join("boot/vmlinuz"), vec![1u8; 64 << 10]).unwrap();
            let lock = std::fs::File::create(k.with_extension("lock")).unwrap();
            let used = SystemTime::now() - Duration::from_secs(age);
            lock.set_times(std::fs::FileTimes::new().set_accessed(used))
                .unwrap();
            (k, lock)
        };
        let (busy, busy_lock) = pulled("busy", 300);
        let (idle, _) = pulled("idle", 200);
        let (recent, _) = pulled("recent", 100);
        use std::os::fd::AsRawFd;
        // SAFETY: flock(2) on an fd the test owns.
        let locked = unsafe { libc::flock(busy_lock.as_raw_fd(), libc::LOCK_SH) };
        assert_eq!(locked, 0);
        // Each takes ~72 KiB: the idle one goes, which is enough.
        let removed = enforce(dir.path(), 150 << 10, &[]);
        assert_eq!(removed, vec![idle.clone()]);
        assert!(busy.exists() && !idle.exists() && recent.exists());
    }
}
