//! virtrun's cache: where it is, and how large it may grow.
//!
//! What virtrun makes there — PVH `vmlinux` copies, module tree images,
//! guest snapshots — is made once per identity and then shared by every
//! run. Each file is written unnamed and linked when complete, so a run
//! never sees half of one. A file's access time, set explicitly (mounts may
//! not keep it), is the moment it was last used; its modification time stays
//! that of its making, which identities count. When the files together take more disk blocks than the cap
//! (`VIRTRUN_CACHE_MAX`, default [`DEFAULT_MAX`]), the least recently used
//! go first. Kernels that `scripts/setup` fetched (`kernels/`) are not
//! counted and never removed.

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

/// Marks `path` as used now, for the least-recently-used order.
pub fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.set_times(std::fs::FileTimes::new().set_accessed(SystemTime::now()));
    }
}

/// Removes the least recently used files until the cache fits in `max`
/// bytes of disk blocks; `keep` (what this run uses) stays. A file another
/// run has open stays readable to it until it closes it. Returns what was
/// removed.
pub fn enforce(dir: &Path, max: u64, keep: &[&Path]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            MANAGED.iter().any(|p| name.starts_with(p))
        })
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some((meta.accessed().ok()?, meta.blocks() * 512, e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    let mut removed = Vec::new();
    for (_, size, path) in files {
        if total <= max {
            break;
        }
        if keep.contains(&path.as_path()) {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= size;
            removed.push(path);
        }
    }
    removed
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
}
