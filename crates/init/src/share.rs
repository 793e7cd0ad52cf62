//! The host's files in the guest (`-hostRoot`, `-share`). The host exports
//! its whole root as one 9p device ([`HOST_SHARE_TAG`]), however many
//! directories are shared, so that the list of shares never changes the
//! guest's devices. It is mounted once, the shared directories are bound
//! from it to their own paths, and the export itself is detached again, so
//! the binary reaches the host only through what was shared.
//!
//! With `-hostRoot` the guest's root becomes the host's, read-only under a
//! tmpfs overlay: the binary may write anywhere, and its writes vanish with
//! the guest, but for the shared directories, which are bound over the
//! overlay and write through to the host. `/proc`, `/sys`, `/dev` move over
//! from the initramfs, `/tmp` and `/run` are the guest's own tmpfs.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use virtrun_protocol::{
    DATA_DIR, GUEST_MARKER, GUEST_OWN_DIRS, GuestConfig, HOST_SHARE_TAG, MAIN_PATH,
};
use virtrun_sysinit::{Error, Result, fs};

/// Where the export is mounted while the shares are bound.
const HOST: &str = "/.virtrun-host";
/// The new root of a `-hostRoot` guest.
const ROOT: &str = "/.virtrun-root";
/// The tmpfs with the overlay's upper and work directories.
const OVERLAY_RW: &str = "/.virtrun-rw";

/// 9p over virtio, the protocol's Linux dialect; `access=any` as the host
/// side (QEMU, `security_model=none`) acts as the user running virtrun;
/// a page cache (`loose`), as the host does not change the files during a
/// run.
const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,access=any,msize=524288,cache=loose";

/// Mounts what `config` shares; with `-hostRoot` the init's root is the
/// host's afterwards.
pub fn mount(config: &GuestConfig) -> Result<()> {
    if !config.host_root && config.shares.is_empty() {
        return Ok(());
    }
    mkdir(Path::new(HOST))?;
    fs::mount(HOST_SHARE_TAG, HOST, Some("9p"), 0, Some(NINEP_OPTIONS)).map_err(|e| {
        if e.source.raw_os_error() == Some(libc::ENODEV) {
            Error::new(
                "this kernel has no 9p, which -hostRoot and -share need: use a kernel that \
                 has it, such as Debian's generic ones (linux-image-amd64, linux-image-arm64)",
                e.source,
            )
        } else {
            e
        }
    })?;
    let root = if config.host_root {
        overlay_root()?;
        ROOT
    } else {
        ""
    };
    let mut shares: Vec<&[u8]> = config.shares.iter().map(Vec::as_slice).collect();
    // Outer directories first, so that nested ones stay visible.
    shares.sort_by_key(|s| s.len());
    for share in shares {
        let share = Path::new(OsStr::from_bytes(share));
        let target = under(root, share);
        mkdir(&target)?;
        bind(&under(HOST, share), &target)?;
    }
    if config.host_root {
        place_initramfs_files(config)?;
    }
    fs::unmount_lazy(HOST)?;
    if config.host_root {
        switch_root()?;
    }
    Ok(())
}

/// Makes [`GUEST_MARKER`] in the root at `root`: this is a guest of
/// virtrun's. Only logged when it fails: it costs nested runs only.
pub fn mark_guest(root: &Path) {
    let marker = root.join(GUEST_MARKER.trim_start_matches('/'));
    if let Err(e) = std::fs::write(&marker, b"") {
        virtrun_sysinit::log::error(&format!("create {}: {e}", marker.display()));
    }
}

/// `path` (absolute) below `root`.
fn under(root: &str, path: &Path) -> PathBuf {
    let mut p = PathBuf::from(root);
    p.push(path.strip_prefix("/").unwrap_or(path));
    if root.is_empty() {
        return path.to_path_buf();
    }
    p
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::new(format!("mkdir {}", path.display()), e))
}

fn bind(from: &Path, to: &Path) -> Result<()> {
    fs::mount(
        &from.to_string_lossy(),
        &to.to_string_lossy(),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
}

/// The host's root under a tmpfs overlay at [`ROOT`], with the guest's own
/// directories.
fn overlay_root() -> Result<()> {
    mkdir(Path::new(OVERLAY_RW))?;
    fs::mount("tmpfs", OVERLAY_RW, Some("tmpfs"), 0, Some("mode=0755"))?;
    for dir in ["upper", "work"] {
        mkdir(&Path::new(OVERLAY_RW).join(dir))?;
    }
    mkdir(Path::new(ROOT))?;
    fs::mount(
        "overlay",
        ROOT,
        Some("overlay"),
        0,
        Some(&format!(
            "lowerdir={HOST},upperdir={OVERLAY_RW}/upper,workdir={OVERLAY_RW}/work"
        )),
    )?;
    for dir in GUEST_OWN_DIRS {
        let target = under(ROOT, Path::new(dir));
        mkdir(&target)?;
        let target = target.to_string_lossy();
        match dir {
            "/tmp" => fs::mount("tmpfs", &target, Some("tmpfs"), 0, Some("mode=1777"))?,
            "/run" => {
                fs::mount("tmpfs", &target, Some("tmpfs"), 0, Some("mode=0755"))?;
                mark_guest(Path::new(ROOT));
            }
            // Moved with everything mounted below them.
            _ => fs::mount(dir, &target, None, libc::MS_MOVE, None)?,
        }
    }
    // The kernel's module tree (modules on demand), mounted at boot.
    let tree = crate::modprobe::tree();
    if fs::is_mount_point(&tree) {
        let target = under(ROOT, &tree);
        mkdir(&target)?;
        fs::mount(
            &tree.to_string_lossy(),
            &target.to_string_lossy(),
            None,
            libc::MS_MOVE,
            None,
        )?;
    }
    Ok(())
}

/// What only the initramfs has: the binary, when the guest cannot see it
/// at its host path (under the guest's own `/tmp`), and the `-addFile`
/// files in `/data`.
fn place_initramfs_files(config: &GuestConfig) -> Result<()> {
    if config.bind_main {
        let exec = under(ROOT, Path::new(OsStr::from_bytes(&config.exec)));
        if let Some(parent) = exec.parent() {
            mkdir(parent)?;
        }
        std::fs::write(&exec, b"")
            .map_err(|e| Error::new(format!("create {}", exec.display()), e))?;
        bind(Path::new(MAIN_PATH), &exec)?;
    }
    // The resolver of -net user (written at boot, see `user_net`), in the
    // guest's own view of the host's /etc: replaced, not written through
    // whatever link the host has there.
    if let Ok(resolv) = std::fs::read(crate::RESOLV_CONF) {
        let target = under(ROOT, Path::new(crate::RESOLV_CONF));
        fs::remove_if_exists(&target)?;
        std::fs::write(&target, resolv)
            .map_err(|e| Error::new(format!("write {}", target.display()), e))?;
    }
    let data = Path::new(DATA_DIR);
    if std::fs::read_dir(data).is_ok_and(|mut d| d.next().is_some()) {
        let target = under(ROOT, data);
        mkdir(&target)?;
        bind(data, &target)?;
    }
    Ok(())
}

/// Makes [`ROOT`] the root, as `switch_root` does (the initramfs itself
/// cannot be unmounted).
fn switch_root() -> Result<()> {
    std::env::set_current_dir(ROOT).map_err(|e| Error::new(format!("chdir {ROOT}"), e))?;
    fs::mount(".", "/", None, libc::MS_MOVE, None)?;
    let dot = c".";
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chroot(dot.as_ptr()) } < 0 {
        return Err(Error::new("chroot", std::io::Error::last_os_error()));
    }
    std::env::set_current_dir("/").map_err(|e| Error::new("chdir /", e))
}
