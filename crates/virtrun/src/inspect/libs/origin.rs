//! Dynamic string tokens in RPATH and RUNPATH entries: `$ORIGIN`, `$LIB`,
//! `$PLATFORM`.

use super::*;
use crate::inspect::elf::{Arch, ElfInfo};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Replaces `$ORIGIN`, `$LIB`, `$PLATFORM` and their `${...}` forms. Other
/// `$` sequences are kept as they are.
pub(super) fn expand_tokens(entry: &str, origin: &[u8], lib: &str, platform: &str) -> Vec<u8> {
    let bytes = entry.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + origin.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let rest = &entry[i + 1..];
            let mut matched = None;
            for (token, value) in [
                ("ORIGIN", origin),
                ("LIB", lib.as_bytes()),
                ("PLATFORM", platform.as_bytes()),
            ] {
                let braced = format!("{{{token}}}");
                if rest.starts_with(&braced) {
                    matched = Some((braced.len(), value));
                } else if rest.starts_with(token)
                    && !rest[token.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                {
                    matched = Some((token.len(), value));
                }
                if matched.is_some() {
                    break;
                }
            }
            if let Some((len, value)) = matched {
                out.extend_from_slice(value);
                i += 1 + len;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

impl Resolver {
    /// Expands the dynamic string tokens in each entry of an RPATH/RUNPATH.
    pub(super) fn expand_all(
        &self,
        entries: &[String],
        origin: &Path,
        info: &ElfInfo,
    ) -> Vec<PathBuf> {
        let lib = if info.machine == Arch::Amd64.machine() && info.is_64 {
            "lib64"
        } else {
            "lib"
        };
        let platform = info.arch.unwrap_or(self.arch).elf_name();
        let origin = origin.as_os_str().as_bytes();
        entries
            .iter()
            .map(|e| {
                let expanded =
                    PathBuf::from(OsStr::from_bytes(&expand_tokens(e, origin, lib, platform)));
                // $ORIGIN already is a host path; other absolute entries name
                // the target system.
                if e.contains("ORIGIN") {
                    expanded
                } else {
                    self.host(&expanded)
                }
            })
            .collect()
    }
}
