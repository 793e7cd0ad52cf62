//! Where things are in the guest: the initramfs's files, the disks' serial
//! numbers, the share's tag, the environment the init sets.

/// Where the host puts the init's configuration inside the initramfs. The init
/// reads it and removes it before it starts the binary.
pub const CONFIG_PATH: &str = "/virtrun.config";

/// Path of the binary in the guest.
pub const MAIN_PATH: &str = "/main";
/// Path of the init in the guest.
pub const INIT_PATH: &str = "/init";
/// Directory of `-addFile` files in the guest; also the binary's `PATH`.
pub const DATA_DIR: &str = "/data";
/// Directory of shared libraries in the guest.
pub const LIB_DIR: &str = "/lib";
/// Directory of kernel modules in the guest, loaded in lexical order.
pub const MODULES_DIR: &str = "/lib/modules";

/// Where the host puts the [`BootConfig`](crate::BootConfig) of the default init: what it needs
/// before the run arrives.
pub const BOOT_CONFIG_PATH: &str = "/virtrun.boot";

/// Where the host puts the [`LoaderConfig`](crate::LoaderConfig) of a standalone guest whose
/// transport needs drivers: `/init` is then virtrun's loader, which loads
/// them, removes this file and [`TRANSPORT_MODULES_DIR`], and `exec`s
/// [`MAIN_PATH`], the user's init, as PID 1.
pub const LOADER_CONFIG_PATH: &str = "/virtrun.loader";

/// Directory of the transport's driver modules in a standalone guest, loaded
/// in lexical order by the loader. The `-addModule` files stay in
/// [`MODULES_DIR`], for the user's init to load, as with the original.
pub const TRANSPORT_MODULES_DIR: &str = "/virtrun-modules";

/// The guest's host name (also in its `/etc/hostname` and `/etc/hosts`).
pub const GUEST_HOSTNAME: &str = "virtrun";

/// The exact environment of the binary, in this order.
pub const GUEST_ENV: [(&str, &str); 3] = [("HOME", "/"), ("TERM", "linux"), ("PATH", DATA_DIR)];

/// The serial number of the disk with the kernel's module tree (an ext4
/// image, read-only).
pub const MODULES_DISK_SERIAL: &str = "virtrun-modules";

/// The serial number of the disk that carries the run of a guest that was
/// booted for a snapshot: the [`Frame::Payload`](crate::Frame::Payload)'s bytes are its first
/// bytes, not on the control channel.
pub const RUN_DISK_SERIAL: &str = "virtrun-run";

/// The 9p mount tag of the host's root, exported whole (one device, however
/// many directories are shared), for `-hostRoot` and `-share`.
pub const HOST_SHARE_TAG: &str = "virtrun";

/// Directories a `-hostRoot` guest has of its own, not the host's.
pub const GUEST_OWN_DIRS: [&str; 5] = ["/proc", "/sys", "/dev", "/tmp", "/run"];

/// A file the default init makes in every guest (in its own `/run`, in
/// both modes): virtrun run inside a guest finds it and runs the binary
/// directly instead of booting a guest in the guest.
pub const GUEST_MARKER: &str = "/run/virtrun-guest";

/// The variable that makes virtrun inside a guest boot a nested guest
/// after all (any non-empty value).
pub const NESTED_ENV: &str = "VIRTRUN_NESTED";
