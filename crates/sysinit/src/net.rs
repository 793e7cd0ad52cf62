//! Network interfaces.

use crate::sys::check;
use crate::{ErrorContext, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sets an interface up. For `lo` the kernel then assigns 127.0.0.1/8 and ::1.
pub fn set_up(name: &str) -> Result<()> {
    let what = || format!("bring {name} up");
    // SAFETY: plain socket(2) call with constant arguments.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
            .context(what)?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(crate::Error::new(
            what(),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the ioctls
    // read and write only within it.
    unsafe {
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req)).context(what)?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req)).context(what)?;
    }
    Ok(())
}

/// Sets the host name (`uname -n`, `hostname`).
pub fn set_hostname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which
    // sethostname(2) only reads.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
        .map(drop)
        .context(|| format!("set the host name {name}"))
}
