//! The system directories: the architecture's defaults and `/etc/ld.so.conf`
//! with its `include` globs.

use super::*;
use crate::inspect::elf::Arch;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The directories glibc searches last for `arch`, on Debian-style
/// (multiarch) and Fedora-style (`lib64`) systems.
pub(super) fn default_dirs(arch: Arch) -> Vec<PathBuf> {
    let triple = format!("{}-linux-gnu", arch.elf_name());
    let mut dirs = vec![format!("/lib/{triple}"), format!("/usr/lib/{triple}")];
    if arch == Arch::Riscv64 {
        dirs.extend(["/lib64/lp64d".to_string(), "/usr/lib64/lp64d".to_string()]);
    }
    dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(String::from));
    dirs.into_iter().map(PathBuf::from).collect()
}

/// Appends the directories listed in an `ld.so.conf`-style file, following
/// `include` lines (relative patterns are relative to the file's directory;
/// `*` and `?` are supported in the last component).
pub(super) fn read_ld_so_conf(path: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    if depth > 8 {
        return;
    }
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("include") => {
                for pattern in words {
                    let pattern = parent_dir(path).join(pattern);
                    for file in glob(&pattern) {
                        read_ld_so_conf(&file, depth + 1, out);
                    }
                }
            }
            Some("hwcap") => {}
            _ => {
                // Old ldconfig syntax allowed "dir=TYPE".
                let dir = line.split('=').next().unwrap_or_default().trim_end();
                if dir.starts_with('/') {
                    out.push(PathBuf::from(dir.trim_end_matches('/')));
                }
            }
        }
    }
}

/// Expands a path whose last component may contain `*` and `?`; sorted.
pub(super) fn glob(pattern: &Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .map(|n| n.as_bytes())
        .unwrap_or_default();
    if !name.iter().any(|&b| b == b'*' || b == b'?') {
        return if pattern.is_file() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = parent_dir(pattern);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            !n.as_bytes().starts_with(b".") && wildcard_match(name, n.as_bytes())
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Matches `name` against `pattern` with `*` (any run) and `?` (one byte).
pub(super) fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Splits a `:`/`;`-separated list of directories, dropping empty entries.
pub(super) fn split_path_list(list: &[u8]) -> Vec<PathBuf> {
    list.split(|&b| b == b':' || b == b';')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(OsStr::from_bytes(d)))
        .collect()
}
