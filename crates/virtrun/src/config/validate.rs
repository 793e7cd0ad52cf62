//! Validation: the flags that name files and directories, checked and
//! made absolute, complete the [`Config`] that parsing began.

use super::raw::Raw;
use super::reference::Reference;
use super::{Config, ConfigError, KernelArg, ModuleRef, lossy};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The configuration `raw` and the positional words (the binary, its
/// arguments) stand for, its paths made absolute against `cwd` and checked.
pub(super) fn validate(
    raw: Raw,
    positional: &[OsString],
    cwd: &Path,
) -> Result<Config, ConfigError> {
    let (binary, args) = positional.split_first().ok_or(ConfigError::NoBinary)?;
    let kernel = raw
        .kernel
        .map(|k| kernel_arg("-kernel", &k, cwd))
        .transpose()?;
    let kernels = raw
        .kernels
        .iter()
        .map(|k| kernel_arg("-kernels", k, cwd))
        .collect::<Result<_, _>>()?;
    let qemu_bin = match raw.qemu_bin {
        Some(q) if q.as_bytes().contains(&b'/') => Some(regular_file("-qemuBin", &q, cwd)?),
        other => other.map(PathBuf::from),
    };
    let files = |what, list: Vec<OsString>| -> Result<Vec<PathBuf>, ConfigError> {
        list.iter().map(|p| regular_file(what, p, cwd)).collect()
    };
    let add_files = files("-addFile", raw.add_files)?;
    let shares = raw
        .shares
        .iter()
        .map(|d| directory("-share", d, cwd))
        .collect::<Result<_, _>>()?;
    let add_modules = raw
        .add_modules
        .iter()
        .map(|m| module_ref(m, cwd))
        .collect::<Result<_, _>>()?;
    let modules_dir = raw
        .modules_dir
        .map(|d| directory("-modulesDir", &d, cwd))
        .transpose()?;
    let sysroot = raw
        .sysroot
        .map(|d| directory("-sysroot", &d, cwd))
        .transpose()?;
    let binary = regular_file("binary", binary, cwd)?;
    Ok(Config {
        kernel,
        kernels,
        qemu_bin,
        add_files,
        shares,
        add_modules,
        modules_dir,
        sysroot,
        binary,
        args: args.to_vec(),
        ..raw.config
    })
}

/// An `-addModule` value: a path if it looks like one (has a `/` or a `.ko`
/// extension), otherwise a module name.
pub(super) fn module_ref(value: &OsString, cwd: &Path) -> Result<ModuleRef, ConfigError> {
    let b = value.as_bytes();
    let is_path = b.contains(&b'/')
        || virtrun_protocol::MODULE_SUFFIXES
            .iter()
            .any(|ext| b.ends_with(ext.as_bytes()));
    if is_path {
        regular_file("-addModule", value, cwd).map(ModuleRef::Path)
    } else {
        Ok(ModuleRef::Name(virtrun_protocol::normalize_module_name(
            &lossy(b),
        )))
    }
}

/// A kernel: an existing file or directory (made absolute against `cwd`),
/// else an image reference; anything else fails as a missing file.
fn kernel_arg(what: &'static str, value: &OsString, cwd: &Path) -> Result<KernelArg, ConfigError> {
    let path = absolute(cwd, Path::new(value));
    if path.is_dir() {
        return Ok(KernelArg::Dir(path));
    }
    match regular_file(what, value, cwd) {
        Err(ConfigError::Missing { what, path }) => value
            .to_str()
            .and_then(Reference::parse)
            .map(KernelArg::Image)
            .ok_or(ConfigError::Missing { what, path }),
        other => other.map(KernelArg::File),
    }
}

/// `path` made absolute against `cwd`, checked to be an existing directory.
pub(super) fn directory(
    what: &'static str,
    path: &OsString,
    cwd: &Path,
) -> Result<PathBuf, ConfigError> {
    let path = absolute(cwd, Path::new(path));
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(ConfigError::Inaccessible {
            what,
            path,
            reason: "not a directory".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ConfigError::Missing { what, path })
        }
        Err(e) => Err(ConfigError::Inaccessible {
            what,
            path,
            reason: e.to_string(),
        }),
    }
}

/// `path` made absolute against `cwd` and cleaned lexically like Go's
/// `filepath.Abs` (no symlinks resolved), checked to be an existing regular file.
pub(super) fn regular_file(
    what: &'static str,
    path: &OsString,
    cwd: &Path,
) -> Result<PathBuf, ConfigError> {
    let path = absolute(cwd, Path::new(path));
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(ConfigError::NotRegular { what, path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ConfigError::Missing { what, path })
        }
        Err(e) => Err(ConfigError::Inaccessible {
            what,
            path,
            reason: e.to_string(),
        }),
    }
}

/// Go's `filepath.Abs`: join onto `cwd` when relative, then `filepath.Clean`.
pub(super) fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut parts: Vec<Component> = Vec::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(Component::Normal(_)) => {
                    parts.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => parts.push(part),
            },
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}
