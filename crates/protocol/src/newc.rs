//! The `newc` cpio format: the initramfs the host writes and the kernel
//! unpacks, and the run's archive the host writes and the init unpacks.

/// The magic that begins every header.
pub const MAGIC: &str = "070701";

/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// A header's length: the magic and 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 110;

/// File type bits of a header's mode (`st_mode`).
pub mod mode {
    /// The bits that hold the type.
    pub const TYPE_MASK: u32 = 0o170000;
    /// Directory.
    pub const DIR: u32 = 0o040000;
    /// Regular file.
    pub const FILE: u32 = 0o100000;
    /// Symbolic link.
    pub const SYMLINK: u32 = 0o120000;
    /// Character device.
    pub const CHAR: u32 = 0o020000;
}
