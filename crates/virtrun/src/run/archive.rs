//! The initramfs: planned from what was inspected, written to a file
//! nobody else can open.

use crate::config::Config;
use crate::inspect::elf::Arch;
use crate::inspect::kernel::{Kernel, ModulePlan};
use crate::inspect::libs::Resolved;
use crate::pack::initramfs::{Content, Input, Module, Plan};
use crate::vm::qemu::Invocation;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::BufWriter;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use virtrun_protocol::{BootConfig, GuestConfig, Layout, LoaderConfig, STANDALONE_PORTS};

/// The default init for each architecture, built (and LZ4-compressed) by
/// `scripts/build-guest-init`; unpacked when an archive with it is written.
pub(super) fn guest_init(arch: Arch) -> Content {
    Content::Packed(match arch {
        Arch::Amd64 => include_bytes!("../../guest/init-x86_64.lz4"),
        Arch::Arm64 => include_bytes!("../../guest/init-aarch64.lz4"),
        Arch::Riscv64 => include_bytes!("../../guest/init-riscv64.lz4"),
    })
}

/// File name of the archive that `-keepInitramfs` keeps.
pub(super) const KEPT_ARCHIVE: &str = "initramfs.cpio";

/// The file the archive is written to. Unnamed (never linked: QEMU reads it
/// through an inherited fd), so nothing of it is left however virtrun ends,
/// and no other user can open it. With `keep_in`, the directory of
/// `-keepInitramfs` (private to the user), a named file only the user can
/// read.
pub(super) fn archive_file(keep_in: Option<&Path>) -> std::io::Result<File> {
    match keep_in {
        None => crate::scratch::unnamed(),
        Some(dir) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(KEPT_ARCHIVE)),
    }
}

/// What goes into the archive. A standalone init on a virtio transport gets
/// the loader in front of it, which loads the transport's drivers (inits
/// written for the original load none) and fails at once when one is
/// missing.
pub(super) fn plan_archive(
    config: &Config,
    arch: Arch,
    kernel: &Kernel,
    inv: &Invocation,
    modules: &ModulePlan,
    guest_config: &GuestConfig,
    libs: &Resolved,
) -> Result<Plan> {
    let guest_modules = |files: &[PathBuf]| {
        files
            .iter()
            .map(|m| Module::for_kernel(kernel, m))
            .collect::<Vec<_>>()
    };
    let loader = config.standalone && inv.layout() == Layout::Virtio;
    // The default init and the loader load the boot modules first, from
    // their own directory; a standalone init without the loader finds all
    // in /lib/modules.
    let (lib_modules, transport_modules) = if loader || !config.standalone {
        (
            guest_modules(&modules.user),
            guest_modules(&modules.transport),
        )
    } else {
        (
            guest_modules(&[modules.transport.as_slice(), &modules.user].concat()),
            Vec::new(),
        )
    };
    Ok(Plan::new(&Input {
        init: if config.standalone && !loader {
            None
        } else {
            Some(guest_init(arch))
        },
        config: (!config.standalone).then(|| guest_config.encode()),
        boot: (!config.standalone).then(|| {
            BootConfig {
                layout: inv.layout(),
                verbose: config.verbose,
                modules_on_demand: inv.modules_image.is_some(),
                run_disk: inv.run_disk.is_some(),
                user_net: inv.net,
            }
            .encode()
        }),
        loader: loader.then(|| {
            LoaderConfig {
                ports: STANDALONE_PORTS + inv.file_ports,
                verbose: config.verbose,
            }
            .encode()
        }),
        main: (!config.host_root || guest_config.bind_main).then_some(config.binary.as_path()),
        files: &config.add_files,
        modules: &lib_modules,
        transport_modules: &transport_modules,
        libs,
    })?)
}

/// Writes the archive (see [`archive_file`]); with `-keepInitramfs` also
/// returns the private directory that keeps it.
pub(super) fn write_archive(
    config: &Config,
    plan: &Plan,
) -> Result<(File, Option<tempfile::TempDir>)> {
    let keep_dir = if config.keep_initramfs {
        Some(
            tempfile::Builder::new()
                .prefix("virtrun-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()
                .context("creating temporary directory")?,
        )
    } else {
        None
    };
    let archive =
        archive_file(keep_dir.as_ref().map(|d| d.path())).context("creating the initramfs")?;
    plan.write(BufWriter::with_capacity(256 * 1024, &archive))?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing initramfs")?;
    Ok((archive, keep_dir))
}
