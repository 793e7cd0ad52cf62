//! Ending the guest.

/// Ends the guest. virtrun runs QEMU with `-no-reboot`, so a reboot makes it
/// exit at once, on every machine type and without ACPI.
pub fn shutdown() -> ! {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot(2) with a valid command; as PID 1 with CAP_SYS_BOOT it
    // does not return on success.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    // Only reached when not allowed to reboot (not PID 1): nothing sane is left.
    std::process::exit(255)
}
