//! Network interfaces.

use crate::sys::check;
use crate::{ErrorContext, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A datagram socket for interface ioctls.
fn ioctl_socket(what: &dyn Fn() -> String) -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
            .context(what)?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `ifreq` naming interface `name`.
fn ifreq(name: &str, what: &dyn Fn() -> String) -> Result<libc::ifreq> {
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
    Ok(req)
}

/// An IPv4 `sockaddr`.
fn sockaddr(ip: [u8; 4]) -> libc::sockaddr {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from_ne_bytes(ip);
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; the
    // kernel reads the address as the family says.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Sets an interface up. For `lo` the kernel then assigns 127.0.0.1/8 and ::1.
pub fn set_up(name: &str) -> Result<()> {
    let what = || format!("bring {name} up");
    let sock = ioctl_socket(&what)?;
    let mut req = ifreq(name, &what)?;
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the ioctls
    // read and write only within it.
    unsafe {
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req)).context(what)?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req)).context(what)?;
    }
    Ok(())
}

/// Gives interface `name` the IPv4 `address`/`prefix`, sets it up and,
/// with a `gateway`, routes everything else through it (the default
/// route).
pub fn configure(name: &str, address: [u8; 4], prefix: u8, gateway: Option<[u8; 4]>) -> Result<()> {
    let what = || format!("configure {name}");
    let sock = ioctl_socket(&what)?;
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
        .to_be_bytes();
    for (request, ip) in [(libc::SIOCSIFADDR, address), (libc::SIOCSIFNETMASK, mask)] {
        let mut req = ifreq(name, &what)?;
        req.ifr_ifru.ifru_addr = sockaddr(ip);
        // SAFETY: `req` is a valid ifreq; the ioctl reads only within it.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), request, &req) }).context(what)?;
    }
    set_up(name)?;
    if let Some(gateway) = gateway {
        // SAFETY: rtentry is plain old data; all-zero is a valid value.
        let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
        route.rt_dst = sockaddr([0; 4]);
        route.rt_genmask = sockaddr([0; 4]);
        route.rt_gateway = sockaddr(gateway);
        route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        let what = || format!("default route via {}", dotted(gateway));
        // SAFETY: `route` is a valid rtentry without a device name; the
        // ioctl only reads it.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &route) }).context(what)?;
    }
    Ok(())
}

/// The interfaces besides `lo`, as the kernel names them.
pub fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// An IPv4 address in its usual notation.
pub fn dotted(ip: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(ip).to_string()
}

/// Sets the host name (`uname -n`, `hostname`).
pub fn set_hostname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which
    // sethostname(2) only reads.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
        .map(drop)
        .context(|| format!("set the host name {name}"))
}
