//! Compressed module files: which compression, and their bytes decompressed.

use super::*;
use std::path::Path;

/// How a module file is compressed, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.ko.xz`
    Xz,
    /// `.ko.zst`
    Zstd,
    /// `.ko.gz`
    Gzip,
}

impl Compression {
    /// The compression of `path`, None for a plain `.ko`.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        [
            (".ko.xz", Self::Xz),
            (".ko.zst", Self::Zstd),
            (".ko.gz", Self::Gzip),
        ]
        .into_iter()
        .find_map(|(ext, c)| name.ends_with(ext).then_some(c))
    }

    /// The kernel option that lets `finit_module` decompress this itself.
    pub fn kernel_option(self) -> &'static str {
        match self {
            Self::Xz => "CONFIG_MODULE_COMPRESS_XZ",
            Self::Zstd => "CONFIG_MODULE_COMPRESS_ZSTD",
            Self::Gzip => "CONFIG_MODULE_COMPRESS_GZIP",
        }
    }
}

/// A module file's content, decompressed. Modules are small (kilobytes to a
/// few megabytes), so they are read whole. `xz` modules are unpacked by the
/// `xz` tool where there is one (xz-utils): 15 times as fast as in-process,
/// which counts for the thousands of them of a tree.
pub fn read_module(path: &Path) -> Result<Vec<u8>, KernelError> {
    let compression = Compression::of(path);
    if compression == Some(Compression::Xz)
        && let Ok(out) = std::process::Command::new("xz")
            .arg("-dc")
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
        && out.status.success()
    {
        return Ok(out.stdout);
    }
    let raw = std::fs::read(path).map_err(io_err(path))?;
    if compression.is_none() {
        return Ok(raw);
    }
    crate::inspect::decompress::decompress(&raw)
        .map_err(|e| KernelError::BadModule(path.to_path_buf(), format!("decompressing: {e}")))
}
