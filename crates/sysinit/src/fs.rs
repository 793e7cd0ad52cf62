//! Filesystems and device nodes every guest needs.

use crate::sys::{check, cstr};
use crate::{ErrorContext, Result};
use std::io;
use std::path::Path;

/// A filesystem to mount.
#[derive(Debug, Clone, Copy)]
pub struct Mount {
    /// Filesystem type, also used as the source name.
    pub fstype: &'static str,
    /// Mount point; created if missing.
    pub target: &'static str,
}

/// Filesystems without which nothing works: their failure is fatal.
pub const ESSENTIAL: [Mount; 3] = [
    Mount {
        fstype: "devtmpfs",
        target: "/dev",
    },
    Mount {
        fstype: "proc",
        target: "/proc",
    },
    Mount {
        fstype: "sysfs",
        target: "/sys",
    },
];

/// Filesystems a test may want; a kernel without one of them only loses it.
pub const OPTIONAL: [Mount; 12] = [
    Mount {
        fstype: "devpts",
        target: "/dev/pts",
    },
    // POSIX shared memory and semaphores (`shm_open`, `sem_open`).
    Mount {
        fstype: "tmpfs",
        target: "/dev/shm",
    },
    Mount {
        fstype: "mqueue",
        target: "/dev/mqueue",
    },
    Mount {
        fstype: "hugetlbfs",
        target: "/dev/hugepages",
    },
    Mount {
        fstype: "cgroup2",
        target: "/sys/fs/cgroup",
    },
    Mount {
        fstype: "bpf",
        target: "/sys/fs/bpf",
    },
    Mount {
        fstype: "debugfs",
        target: "/sys/kernel/debug",
    },
    Mount {
        fstype: "tracefs",
        target: "/sys/kernel/tracing",
    },
    Mount {
        fstype: "securityfs",
        target: "/sys/kernel/security",
    },
    Mount {
        fstype: "configfs",
        target: "/sys/kernel/config",
    },
    Mount {
        fstype: "pstore",
        target: "/sys/fs/pstore",
    },
    Mount {
        fstype: "fusectl",
        target: "/sys/fs/fuse/connections",
    },
];

impl Mount {
    /// Creates the mount point and mounts the filesystem.
    pub fn mount(&self) -> Result<()> {
        let what = || format!("mount {} on {}", self.fstype, self.target);
        std::fs::create_dir_all(self.target).context(what)?;
        let src = cstr(self.fstype).context(what)?;
        let dst = cstr(self.target).context(what)?;
        // SAFETY: all pointers are valid NUL-terminated strings for the call's
        // duration; a null data pointer is allowed for these filesystems.
        let ret = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                src.as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_RELATIME,
                std::ptr::null(),
            )
        };
        check(ret).map(drop).context(what)
    }
}

/// mount(2): mounts `source` of type `fstype` (`None` for a bind or a move)
/// on `target` with `flags` and the filesystem's `data` options.
pub fn mount(
    source: &str,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let what = || match fstype {
        Some(t) => format!("mount {t} {source} on {target}"),
        None => format!("mount {source} on {target}"),
    };
    let c = |s: &str| cstr(s).context(what);
    let (src, dst) = (c(source)?, c(target)?);
    let fstype = fstype.map(c).transpose()?;
    let data = data.map(c).transpose()?;
    let ptr = |s: &Option<std::ffi::CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a valid NUL-terminated string (or null, which
    // mount(2) allows for the type of a bind or move and for the data) for
    // the call's duration.
    let ret = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(ret).map(drop).context(what)
}

/// Unmounts the filesystem mounted on `target`, at once or, with `lazy`,
/// once it is no longer in use (what is mounted from it stays).
pub fn unmount_lazy(target: &str) -> Result<()> {
    let what = || format!("unmount {target}");
    let path = cstr(target).context(what)?;
    // SAFETY: a valid NUL-terminated path for the call's duration.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) })
        .map(drop)
        .context(what)
}

/// Unmounts the filesystem mounted on `target`.
pub fn unmount(target: &str) -> Result<()> {
    let what = || format!("unmount {target}");
    let path = cstr(target).context(what)?;
    // SAFETY: a valid NUL-terminated path for the call's duration.
    check(unsafe { libc::umount2(path.as_ptr(), 0) })
        .map(drop)
        .context(what)
}

/// Mounts [`ESSENTIAL`]; stops at the first failure.
pub fn mount_essential() -> Result<()> {
    ESSENTIAL.iter().try_for_each(Mount::mount)
}

/// Mounts [`OPTIONAL`] and returns the failures, which callers usually log.
pub fn mount_optional() -> Vec<crate::Error> {
    OPTIONAL.iter().filter_map(|m| m.mount().err()).collect()
}

/// The `/dev` symlinks programs expect: `(link, target)`.
pub const DEV_LINKS: [(&str, &str); 6] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/core", "/proc/kcore"),
    ("/dev/rtc", "rtc0"),
];

/// Creates [`DEV_LINKS`]; an existing link is left alone.
pub fn create_dev_links() -> Result<()> {
    for (link, target) in DEV_LINKS {
        match std::os::unix::fs::symlink(target, link) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(crate::Error::new(format!("symlink {link}"), e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Makes `link` a symlink to `target`, replacing whatever file was there.
pub fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    remove_if_exists(link)?;
    std::os::unix::fs::symlink(target, link).context(|| format!("symlink {}", link.display()))
}

/// Whether something is mounted at `path`: it is on another file system
/// than its parent.
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    match (dev(path), path.parent().and_then(dev)) {
        (Some(here), Some(parent)) => here != parent,
        _ => false,
    }
}

/// Removes a file, ignoring that it may already be gone.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(crate::Error::new(format!("remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}
