//! Entropy and the clock for the run, whether the guest just booted or was
//! restored from a snapshot that every restore starts from: the host's
//! entropy in the random pool and the host's wall clock.

use crate::sys::check;
use crate::{ErrorContext, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use virtrun_protocol::Resume;

/// `_IOW('R', 0x03, int[2])`, the same on every architecture virtrun runs
/// (libc does not have it).
const RNDADDENTROPY: u32 = 0x4008_5203;
/// `_IO('R', 0x07)`.
const RNDRESEEDCRNG: u32 = 0x5207;

/// `struct rand_pool_info` of `RNDADDENTROPY` with room for the seed.
#[repr(C)]
struct PoolInfo {
    entropy_count: libc::c_int,
    buf_size: libc::c_int,
    buf: [u8; 32],
}

/// The kernel's random pool, opened before the save point: an open in a
/// restored guest costs it the translation of the whole path lookup.
pub struct Pool(File);

impl Pool {
    /// Opens `/dev/urandom` for writing.
    pub fn open() -> Result<Pool> {
        OpenOptions::new()
            .write(true)
            .open("/dev/urandom")
            .map(Pool)
            .context(|| "open /dev/urandom".to_string())
    }
}

/// Adds `seed` to the kernel's pool, credited, and reseeds the CRNG from
/// it: what `getrandom` returns from now on differs between two restores
/// of one snapshot.
pub fn reseed(pool: &Pool, seed: &[u8; 32]) -> Result<()> {
    let what = || "reseed the random pool".to_string();
    let urandom = &pool.0;
    let info = PoolInfo {
        entropy_count: (seed.len() * 8) as libc::c_int,
        buf_size: seed.len() as libc::c_int,
        buf: *seed,
    };
    // SAFETY: RNDADDENTROPY reads a rand_pool_info whose buf holds
    // buf_size bytes, which `info` does.
    check(unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY as libc::Ioctl, &info) })
        .context(what)?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    check(unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG as libc::Ioctl) })
        .context(what)?;
    Ok(())
}

/// Sets the wall clock to the host's.
pub fn set_clock(secs: i64, nanos: u32) -> Result<()> {
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as libc::c_long,
    };
    // SAFETY: a valid timespec; clock_settime only reads it.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })
        .context(|| "set the clock".to_string())?;
    Ok(())
}

/// Both: the pool first, so nothing random is drawn from the old state
/// after the clock moved.
pub fn apply(pool: &Pool, resume: &Resume) -> Result<()> {
    reseed(pool, &resume.seed)?;
    set_clock(resume.secs, resume.nanos)
}
