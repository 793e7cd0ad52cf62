//! The fds QEMU inherits: the archive, the channels (one end of a socket
//! pair each, or an unlinked file for a virtio console), the run disk, and
//! where they are placed in the child.

use super::*;
use crate::vm::qemu::{Channel, Invocation};
use std::io::{self};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The fd QEMU reads the initramfs from (`-initrd /dev/fd/3`): the archive
/// is an unnamed file that only virtrun and QEMU hold.
pub(super) const ARCHIVE_FD: i32 = 3;

/// First fd QEMU sees its channel ends at.
pub(super) const FIRST_CHANNEL_FD: i32 = ARCHIVE_FD + 1;

/// The path QEMU opens the initramfs at: the archive handed to [`run`].
pub fn archive_path() -> std::path::PathBuf {
    format!("/dev/fd/{ARCHIVE_FD}").into()
}

/// Where QEMU finds the run disk's file of a guest with `channels`
/// channels: the fd after theirs.
pub fn run_disk_path(channels: usize) -> std::path::PathBuf {
    format!("/dev/fd/{}", FIRST_CHANNEL_FD + channels as i32).into()
}

/// The fds QEMU sees the ends of `channels` channels at.
pub fn channel_fds(channels: usize) -> Vec<i32> {
    (0..channels as i32).map(|i| FIRST_CHANNEL_FD + i).collect()
}

pub(super) fn clone_fd(file: &std::fs::File) -> Result<OwnedFd, SuperviseError> {
    Ok(file.try_clone().map_err(SuperviseError::Channels)?.into())
}

/// The host's end of each channel and the end QEMU inherits: a socket
/// pair, or for a file-backed channel an unnamed file that the host reads
/// as it grows until `qemu_gone`.
pub(super) fn open_channels(
    inv: &Invocation,
    channels: &[Channel],
    qemu_gone: &Arc<AtomicBool>,
) -> Result<(Vec<HostEnd>, Vec<OwnedFd>), SuperviseError> {
    let mut host_ends = Vec::new();
    let mut qemu_ends: Vec<OwnedFd> = Vec::new();
    for &channel in channels {
        if inv.file_backed(channel) {
            let file = crate::scratch::unnamed().map_err(SuperviseError::Channels)?;
            qemu_ends.push(file.try_clone().map_err(SuperviseError::Channels)?.into());
            host_ends.push(HostEnd::File {
                file,
                qemu_gone: Arc::clone(qemu_gone),
            });
        } else {
            let (host, qemu) = UnixStream::pair().map_err(SuperviseError::Channels)?;
            host_ends.push(HostEnd::Socket(host));
            qemu_ends.push(qemu.into());
        }
    }
    Ok((host_ends, qemu_ends))
}

/// In the child before exec: puts `fds[i]` at `ARCHIVE_FD + i`, without
/// close-on-exec. Two steps, so that no source is overwritten before it moved.
pub(super) fn place_fds(fds: &[i32]) -> io::Result<()> {
    let above = ARCHIVE_FD + fds.len() as i32;
    let mut moved = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: fcntl(2) on an fd we own; async-signal-safe.
        let tmp = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above) };
        if tmp < 0 {
            return Err(io::Error::last_os_error());
        }
        moved.push(tmp);
    }
    for (i, tmp) in moved.into_iter().enumerate() {
        // SAFETY: dup2(2) onto a fixed number; async-signal-safe. The new fd
        // does not have close-on-exec.
        if unsafe { libc::dup2(tmp, ARCHIVE_FD + i as i32) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
