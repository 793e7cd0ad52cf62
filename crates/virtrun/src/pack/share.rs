//! The host's files in the guest (`-hostRoot`, `-share`,
//! docs/reference.md#what-the-guest-sees): which host directories write
//! through, where the binary runs from and in which directory. Pure but for
//! looking for a repository's `.git` or `.hg`.

use crate::config::Config;
use std::path::{Path, PathBuf};
use virtrun_protocol::GUEST_OWN_DIRS;

/// What the guest gets of the host's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shares {
    /// Host directories at the same path in the guest, writable through, in
    /// order: with `-hostRoot` the working directory's repository first,
    /// then each `-share`.
    pub writable: Vec<PathBuf>,
    /// Where the binary runs from in the guest; `None` for `/main`.
    pub exec: Option<PathBuf>,
    /// The guest cannot see the binary at `exec` (it lies in a directory
    /// the guest has of its own, as go test's `/tmp/go-build…`): `/main` is
    /// bound there.
    pub bind_main: bool,
    /// The binary's working directory; `None` for `/`.
    pub cwd: Option<PathBuf>,
}

/// Why the host's files cannot be shared as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    /// A standalone init sets up the guest itself.
    #[error(
        "-hostRoot and -share do not work with -standalone: the binary is the init and sets the guest up itself"
    )]
    Standalone,
}

/// The plan for `config`, run in `cwd`.
pub fn plan(config: &Config, cwd: &Path) -> Result<Shares, ShareError> {
    if !config.host_root && config.shares.is_empty() {
        return Ok(Shares::default());
    }
    if config.standalone {
        return Err(ShareError::Standalone);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut writable = Vec::new();
    if config.host_root {
        writable.extend(repository_root(cwd, home.as_deref(), &|p| p.exists()));
    }
    for share in &config.shares {
        if !writable.contains(share) {
            writable.push(share.clone());
        }
    }
    if !config.host_root {
        // The original's layout, but for the working directory when it is
        // in a shared directory.
        let cwd = writable
            .iter()
            .any(|w| cwd.starts_with(w))
            .then(|| cwd.to_path_buf());
        return Ok(Shares {
            writable,
            cwd,
            ..Shares::default()
        });
    }
    // The guest resolves symlinks in its own root, where /tmp is its own:
    // the binary's real path tells whether it sees the file.
    let binary = config
        .binary
        .canonicalize()
        .unwrap_or_else(|_| config.binary.clone());
    let bind_main = !visible(&binary, &writable);
    Ok(Shares {
        exec: Some(binary),
        bind_main,
        cwd: Some(cwd.to_path_buf()),
        writable,
    })
}

/// Whether a `-hostRoot` guest sees the host's `path`: not in a directory
/// the guest has of its own, unless a writable directory brings it.
fn visible(path: &Path, writable: &[PathBuf]) -> bool {
    !GUEST_OWN_DIRS.iter().any(|d| path.starts_with(d))
        || writable.iter().any(|w| path.starts_with(w))
}

/// The repository `cwd` is in (the nearest directory with a `.git` or
/// `.hg`), else `cwd` itself; never `/` or `home` as a whole, which would
/// make every file of the user's writable.
fn repository_root(
    cwd: &Path,
    home: Option<&Path>,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let too_wide = |p: &Path| p == Path::new("/") || Some(p) == home;
    let repo = cwd
        .ancestors()
        .find(|d| exists(&d.join(".git")) || exists(&d.join(".hg")))
        .filter(|r| !too_wide(r))
        .unwrap_or(cwd);
    (!too_wide(repo)).then(|| repo.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(cwd: &str, home: &str, marked: &[&str]) -> Option<PathBuf> {
        let exists = |p: &Path| marked.iter().any(|m| p == Path::new(m));
        repository_root(Path::new(cwd), Some(Path::new(home)), &exists)
    }

    #[test]
    fn the_repository_is_found_upwards() {
        let h = "/home/u";
        assert_eq!(
            repo("/home/u/src/p/pkg", h, &["/home/u/src/p/.git"]),
            Some("/home/u/src/p".into())
        );
        assert_eq!(
            repo("/srv/w/sub", h, &["/srv/w/.hg"]),
            Some("/srv/w".into())
        );
        // No repository: the working directory alone.
        assert_eq!(
            repo("/home/u/scratch", h, &[]),
            Some("/home/u/scratch".into())
        );
    }

    #[test]
    fn never_root_or_home_as_a_whole() {
        let h = "/home/u";
        // A dotfiles repository in $HOME: only the working directory.
        assert_eq!(
            repo("/home/u/notes", h, &["/home/u/.git"]),
            Some("/home/u/notes".into())
        );
        assert_eq!(repo("/home/u", h, &["/home/u/.git"]), None);
        assert_eq!(repo("/", h, &["/.git"]), None);
        assert_eq!(repo("/", h, &[]), None);
    }

    #[test]
    fn a_binary_under_the_guests_own_tmp_is_not_visible() {
        let w = [PathBuf::from("/home/u/src/p")];
        assert!(visible(Path::new("/usr/bin/env"), &w));
        assert!(visible(Path::new("/home/u/src/p/target/debug/t"), &w));
        assert!(!visible(Path::new("/tmp/go-build1/b001/p.test"), &w));
        assert!(!visible(Path::new("/run/user/0/x"), &w));
        assert!(visible(
            Path::new("/tmp/work/t"),
            &[PathBuf::from("/tmp/work")]
        ));
    }
}
