//! The kernel a run takes when no `-kernel` is given: the cache's kernel for
//! the binary's architecture (`<cache>/kernels/<arch>/vmlinuz`, what
//! `scripts/setup` makes), else, for the host's own architecture, the
//! running kernel's image (`/boot/vmlinuz-<release>`) with its module tree
//! (`/lib/modules/<release>`), when this user may read it.

use super::elf::Arch;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where kernels are looked for: the machine's places ([`Places::host`]) or,
/// in tests, a fake tree.
#[derive(Debug, Clone)]
pub struct Places {
    /// virtrun's cache directory, when there is one.
    pub cache: Option<PathBuf>,
    /// The host's architecture.
    pub host_arch: Option<Arch>,
    /// The running kernel's release (`uname -r`).
    pub release: Option<String>,
    /// Where the distribution keeps kernel images: `/boot`.
    pub boot: PathBuf,
    /// Where it keeps module trees: `/lib/modules`.
    pub modules: PathBuf,
}

impl Places {
    /// This machine's places.
    pub fn host() -> Places {
        Places {
            cache: crate::cache::dir(),
            host_arch: Arch::host(),
            release: running_release(),
            boot: PathBuf::from("/boot"),
            modules: PathBuf::from("/lib/modules"),
        }
    }

    /// The cache's kernel for `arch`.
    pub fn cached(&self, arch: Arch) -> Option<PathBuf> {
        let dir = self.cache.as_ref()?;
        Some(dir.join("kernels").join(arch.name()).join("vmlinuz"))
    }

    /// The cache's generic kernel for `arch` (one with 9p, for the host's
    /// files), as `scripts/setup` makes it.
    pub fn cached_generic(&self, arch: Arch) -> Option<PathBuf> {
        let dir = self.cache.as_ref()?;
        Some(
            dir.join("kernels")
                .join(format!("{}-generic", arch.name()))
                .join("vmlinuz"),
        )
    }
}

/// A kernel found, with the module tree to use when one was found with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The kernel image.
    pub image: PathBuf,
    /// Its module tree, for the host's own kernel.
    pub modules_dir: Option<PathBuf>,
}

/// No kernel in any place, with what was found at each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    arch: Arch,
    looked: Vec<(PathBuf, String)>,
    cached: Option<PathBuf>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no kernel for {} (no -kernel given); looked at ",
            self.arch.name()
        )?;
        for (i, (path, why)) in self.looked.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} ({why})", path.display())?;
        }
        if self.looked.is_empty() {
            f.write_str("nothing (no cache directory, not the host's architecture)")?;
        }
        f.write_str("; pass -kernel PATH")?;
        if let Some(cached) = &self.cached {
            write!(
                f,
                ", or put a kernel image at {} (scripts/setup in virtrun's sources fetches \
                 Debian's)",
                cached.display()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for NotFound {}

/// The kernel for a binary of `arch`, from the first place that has a
/// readable one.
pub fn find(arch: Arch, places: &Places) -> Result<Found, NotFound> {
    let mut looked = Vec::new();
    let cached = places.cached(arch);
    if let Some(path) = &cached {
        match readable(path) {
            Ok(()) => {
                return Ok(Found {
                    image: path.clone(),
                    modules_dir: None,
                });
            }
            Err(why) => looked.push((path.clone(), why)),
        }
    }
    if places.host_arch == Some(arch) {
        match &places.release {
            Some(release) => {
                let image = places.boot.join(format!("vmlinuz-{release}"));
                match readable(&image) {
                    Ok(()) => {
                        let tree = places.modules.join(release);
                        return Ok(Found {
                            image,
                            modules_dir: tree.is_dir().then_some(tree),
                        });
                    }
                    Err(why) => looked.push((image, why)),
                }
            }
            None => looked.push((
                places.boot.clone(),
                "the running kernel's release is unknown".into(),
            )),
        }
    }
    Err(NotFound {
        arch,
        looked,
        cached,
    })
}

/// `Ok` when `path` is a regular file this process can open, else why not.
fn readable(path: &Path) -> Result<(), String> {
    match File::open(path) {
        Ok(file) => match file.metadata() {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err("not a regular file".into()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("missing".into()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err("not readable by this user".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The running kernel's release, as `uname -r` prints it.
fn running_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim_end().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Fake {
        _dir: tempfile::TempDir,
        places: Places,
    }

    /// An empty cache and `/boot` for a host of `host_arch` running
    /// `6.1.0-test`.
    fn fake(host_arch: Arch) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["cache", "boot", "lib/modules"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let places = Places {
            cache: Some(root.join("cache")),
            host_arch: Some(host_arch),
            release: Some("6.1.0-test".into()),
            boot: root.join("boot"),
            modules: root.join("lib/modules"),
        };
        Fake { _dir: dir, places }
    }

    fn put(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"kernel").unwrap();
    }

    #[test]
    fn the_cache_comes_first() {
        let f = fake(Arch::Amd64);
        let cached = f.places.cached(Arch::Amd64).unwrap();
        put(&cached);
        put(&f.places.boot.join("vmlinuz-6.1.0-test"));
        assert_eq!(
            find(Arch::Amd64, &f.places),
            Ok(Found {
                image: cached,
                modules_dir: None
            })
        );
    }

    #[test]
    fn the_cache_has_a_kernel_per_architecture() {
        let f = fake(Arch::Amd64);
        let cache = f.places.cache.clone().unwrap();
        put(&cache.join("kernels/arm64/vmlinuz"));
        put(&cache.join("kernels/riscv64/vmlinuz"));
        for arch in [Arch::Arm64, Arch::Riscv64] {
            let found = find(arch, &f.places).unwrap();
            assert_eq!(
                found.image,
                cache.join("kernels").join(arch.name()).join("vmlinuz")
            );
        }
        // Not amd64's: nothing in the cache nor /boot.
        assert!(find(Arch::Amd64, &f.places).is_err());
    }

    #[test]
    fn the_running_kernel_with_its_module_tree() {
        let f = fake(Arch::Amd64);
        let image = f.places.boot.join("vmlinuz-6.1.0-test");
        put(&image);
        // A kernel of another release beside it is not the running one.
        put(&f.places.boot.join("vmlinuz-6.1.0-other"));
        assert_eq!(
            find(Arch::Amd64, &f.places),
            Ok(Found {
                image: image.clone(),
                modules_dir: None
            })
        );
        let tree = f.places.modules.join("6.1.0-test");
        std::fs::create_dir_all(&tree).unwrap();
        assert_eq!(
            find(Arch::Amd64, &f.places),
            Ok(Found {
                image,
                modules_dir: Some(tree)
            })
        );
    }

    #[test]
    fn the_running_kernel_only_for_the_hosts_architecture() {
        let f = fake(Arch::Amd64);
        put(&f.places.boot.join("vmlinuz-6.1.0-test"));
        let e = find(Arch::Arm64, &f.places).unwrap_err().to_string();
        let cached = f.places.cached(Arch::Arm64).unwrap();
        assert_eq!(
            e,
            format!(
                "no kernel for arm64 (no -kernel given); looked at {} (missing); pass -kernel \
                 PATH, or put a kernel image at {} (scripts/setup in virtrun's sources fetches \
                 Debian's)",
                cached.display(),
                cached.display()
            )
        );
    }

    #[test]
    fn nothing_found_says_where_it_looked() {
        let f = fake(Arch::Amd64);
        let cached = f.places.cached(Arch::Amd64).unwrap();
        let boot = f.places.boot.join("vmlinuz-6.1.0-test");
        let e = find(Arch::Amd64, &f.places).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.starts_with(&format!(
                "no kernel for amd64 (no -kernel given); looked at {} (missing), {} (missing); \
                 pass -kernel PATH, or put a kernel image at {}",
                cached.display(),
                boot.display(),
                cached.display()
            )),
            "{e}"
        );
        // A directory where the image should be is no kernel either.
        std::fs::create_dir_all(&boot).unwrap();
        let e = find(Arch::Amd64, &f.places).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} (not a regular file)", boot.display())),
            "{e}"
        );
    }

    #[test]
    fn an_unreadable_image_is_passed_over() {
        // Debian's /boot/vmlinuz-* is readable by root alone.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // Root reads whatever the mode; the check needs another user.
            let f = fake(Arch::Amd64);
            let boot = f.places.boot.join("vmlinuz-6.1.0-test");
            put(&boot);
            std::fs::set_permissions(&boot, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert_eq!(find(Arch::Amd64, &f.places).unwrap().image, boot);
            return;
        }
        let f = fake(Arch::Amd64);
        let boot = f.places.boot.join("vmlinuz-6.1.0-test");
        put(&boot);
        std::fs::set_permissions(&boot, std::fs::Permissions::from_mode(0o000)).unwrap();
        let e = find(Arch::Amd64, &f.places).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} (not readable by this user)", boot.display())),
            "{e}"
        );
    }

    #[test]
    fn no_cache_directory_and_a_foreign_architecture() {
        let mut f = fake(Arch::Amd64);
        f.places.cache = None;
        let e = find(Arch::Riscv64, &f.places).unwrap_err().to_string();
        assert_eq!(
            e,
            "no kernel for riscv64 (no -kernel given); looked at nothing (no cache directory, \
             not the host's architecture); pass -kernel PATH"
        );
    }

    #[test]
    fn the_running_release_is_read() {
        let release = running_release().unwrap();
        assert!(!release.is_empty() && !release.contains('\n'));
    }
}
