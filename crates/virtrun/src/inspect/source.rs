//! Where a kernel comes from: an image file, a directory (an extracted
//! kernel package or image root: the image in `boot/`, its modules in
//! `lib/modules/<release>` or `usr/lib/modules/<release>`), or an OCI image
//! of that layout, pulled into the cache by the [`registry`] client and
//! then used as a directory.
//!
//! [`registry`]: super::registry

use std::path::{Path, PathBuf};

/// A kernel image and, when its source names one, its module tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The kernel image.
    pub image: PathBuf,
    /// Its module tree, when the source has one.
    pub modules_dir: Option<PathBuf>,
}

/// Why a kernel directory cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// No image in `boot/`.
    #[error(
        "{0}: no kernel image (want boot/vmlinuz, or exactly one boot/vmlinuz-* or boot/vmlinux-*)"
    )]
    NoImage(PathBuf),
    /// More than one candidate image.
    #[error("{0}: several kernel images ({1}): name one of them as -kernel")]
    SeveralImages(PathBuf, String),
}

/// The kernel in directory `dir`: `boot/vmlinuz`, else the one
/// `boot/vmlinuz-*` or `boot/vmlinux-*`; its modules from the one release
/// under `lib/modules/` or `usr/lib/modules/` (with several, the kernel's
/// own release picks, as for an image file).
pub fn in_directory(dir: &Path) -> Result<Source, SourceError> {
    let boot = dir.join("boot");
    let plain = boot.join("vmlinuz");
    let image = if plain.is_file() {
        plain
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("vmlinuz-") || name.starts_with("vmlinux-")
            })
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        match found.len() {
            0 => return Err(SourceError::NoImage(dir.to_path_buf())),
            1 => found.remove(0),
            _ => {
                let names: Vec<String> = found
                    .iter()
                    .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
                    .collect();
                return Err(SourceError::SeveralImages(
                    dir.to_path_buf(),
                    names.join(", "),
                ));
            }
        }
    };
    Ok(Source {
        image,
        modules_dir: single_release(dir),
    })
}

/// The module tree of the one release under `lib/modules/` or
/// `usr/lib/modules/` of `dir`.
fn single_release(dir: &Path) -> Option<PathBuf> {
    ["lib/modules", "usr/lib/modules"].iter().find_map(|base| {
        let trees: Vec<PathBuf> = std::fs::read_dir(dir.join(base))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        match <[PathBuf; 1]>::try_from(trees) {
            Ok([tree]) => Some(tree),
            Err(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if f.ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::write(&path, b"x").unwrap();
            }
        }
        dir
    }

    #[test]
    fn an_image_root_or_an_extracted_package() {
        let image = tree(&["boot/vmlinuz", "lib/modules/6.6.1/modules.dep"]);
        let d = image.path();
        assert_eq!(
            in_directory(d),
            Ok(Source {
                image: d.join("boot/vmlinuz"),
                modules_dir: Some(d.join("lib/modules/6.6.1")),
            })
        );
        let package = tree(&[
            "boot/vmlinuz-6.1.0-57-amd64",
            "boot/config-6.1.0-57-amd64",
            "boot/System.map-6.1.0-57-amd64",
            "usr/lib/modules/6.1.0-57-amd64/kernel/",
        ]);
        let d = package.path();
        assert_eq!(
            in_directory(d),
            Ok(Source {
                image: d.join("boot/vmlinuz-6.1.0-57-amd64"),
                modules_dir: Some(d.join("usr/lib/modules/6.1.0-57-amd64")),
            })
        );
        // Several releases: the image's own picks later; none: no tree.
        let several = tree(&["boot/vmlinux-6.12", "lib/modules/a/", "lib/modules/b/"]);
        assert_eq!(in_directory(several.path()).unwrap().modules_dir, None);
    }

    #[test]
    fn no_image_or_several_is_an_error() {
        let empty = tree(&["lib/modules/6.6.1/"]);
        assert_eq!(
            in_directory(empty.path()),
            Err(SourceError::NoImage(empty.path().to_path_buf()))
        );
        let two = tree(&["boot/vmlinuz-a", "boot/vmlinuz-b"]);
        let e = in_directory(two.path()).unwrap_err().to_string();
        assert!(e.ends_with("several kernel images (boot/vmlinuz-a, boot/vmlinuz-b): name one of them as -kernel"), "{e}");
    }
}
