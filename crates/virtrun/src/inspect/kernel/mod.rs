//! What a kernel image tells about itself: its release, its build config and
//! its module tree, and which modules a transport needs from that tree.
//!
//! Stock distro kernels build the virtio drivers as modules and their packages
//! ship no `modules.dep` (it is generated when the package is installed), so
//! the dependency graph is read from each module's `.modinfo` section when
//! `modules.dep` is absent.

mod compression;
mod config;
mod drivers;
mod image;
mod tree;
pub use compression::{Compression, read_module};
pub use config::KernelConfig;
pub use drivers::{Driver, Needs, Purpose, RUN_DISK_DRIVER, needed_drivers, transport_drivers};
pub use image::{image_arch, read_image};
pub use tree::{ModuleTree, modinfo, modinfo_of, normalize};

use crate::inspect::elf::Arch;
use std::io;
use std::path::{Path, PathBuf};

/// Why the kernel's modules cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Reading a file failed.
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    /// A module is neither in the tree nor built in.
    #[error("module {name} not found in {tree} (and not built into the kernel)")]
    UnknownModule {
        /// Module name.
        name: String,
        /// Tree searched.
        tree: String,
    },
    /// A module name was given but there is no tree to find it in.
    #[error("-addModule {0}: no module tree found for this kernel; give a path or -modulesDir")]
    NoTreeForName(String),
    /// The kernel's configuration says the transport's driver is not there
    /// at all, not even as a module.
    #[error("kernel {release} has no {driver} ({option} is not set): {hint}")]
    DriverAbsent {
        /// Kernel release.
        release: String,
        /// Config option of the driver.
        option: &'static str,
        /// Module name.
        driver: &'static str,
        /// What needs it and what helps.
        hint: String,
    },
    /// The transport's driver is a module, but no module tree is there.
    #[error(
        "kernel {release} has {option}={value} ({driver} is not built in) but its module tree \
         was not found (looked in {looked}): use -modulesDir DIR, -transport isa, or a kernel \
         with {option}=y"
    )]
    DriverMissing {
        /// Kernel release.
        release: String,
        /// Config option of the driver.
        option: &'static str,
        /// Its value (`m` or not set).
        value: String,
        /// Module name.
        driver: &'static str,
        /// Where the tree was looked for.
        looked: String,
    },
    /// A module file is not a usable ELF object.
    #[error("{0}: not a kernel module: {1}")]
    BadModule(PathBuf, String),
    /// Modules depend on each other in a circle.
    #[error("module dependency cycle through {0}")]
    Cycle(String),
    /// The file is no kernel image virtrun knows.
    #[error(
        "{0}: not a Linux kernel image (no x86 boot header, arm64/riscv64 Image header, \
         EFI/PE or ELF header)"
    )]
    NotAKernel(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KernelError + '_ {
    move |e| KernelError::Io(path.to_path_buf(), e)
}

/// What is known about a kernel image.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The image, as given.
    pub image: PathBuf,
    /// Architecture, when the header tells it.
    pub arch: Option<Arch>,
    /// Release, e.g. `6.1.0-56-cloud-amd64`.
    pub release: Option<String>,
    /// Build config, when found next to the image.
    pub config: Option<KernelConfig>,
    /// Module tree, when found.
    pub modules: Option<ModuleTree>,
    /// Where the module tree was looked for (for messages).
    pub looked: Vec<PathBuf>,
}

/// The module files a run loads, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulePlan {
    /// The transport's drivers with their dependencies.
    pub transport: Vec<PathBuf>,
    /// The `-addModule` files with their dependencies, none of the above.
    pub user: Vec<PathBuf>,
    /// A driver that may be missing, for when the guest does not answer.
    pub doubt: Option<String>,
}

impl Kernel {
    /// Inspects `image`; `modules_dir` overrides the search for its tree.
    pub fn inspect(image: &Path, modules_dir: Option<&Path>) -> Result<Self, KernelError> {
        let (arch, release) = read_image(image)?;
        // An extracted package keeps the image in boot/ and the modules in
        // lib/modules/ beside it; follow links to find that layout.
        let real = std::fs::canonicalize(image).map_err(io_err(image))?;
        let boot = real.parent().unwrap_or(Path::new("/"));
        let config = release
            .as_ref()
            .map(|r| boot.join(format!("config-{r}")))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| KernelConfig::parse(&t));
        let looked: Vec<PathBuf> = match (modules_dir, &release) {
            (Some(dir), _) => vec![dir.to_path_buf()],
            (None, Some(r)) => {
                let base = boot.parent().unwrap_or(Path::new("/"));
                vec![
                    base.join("lib/modules").join(r),
                    base.join("usr/lib/modules").join(r),
                    Path::new("/lib/modules").join(r),
                    Path::new("/usr/lib/modules").join(r),
                ]
            }
            (None, None) => Vec::new(),
        };
        let modules = match looked.iter().find(|d| d.is_dir()) {
            Some(dir) => Some(ModuleTree::open(dir)?),
            None => None,
        };
        Ok(Kernel {
            image: image.to_path_buf(),
            arch,
            release,
            config,
            modules,
            looked,
        })
    }

    /// Whether the kernel has 9p over virtio (built in or as modules), by
    /// its configuration; `None` without one.
    pub fn has_9p(&self) -> Option<bool> {
        let config = self.config.as_ref()?;
        Some(
            ["CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS"]
                .iter()
                .all(|o| matches!(config.get(o), Some("y" | "m"))),
        )
    }

    /// The error for a driver the kernel's configuration does not have.
    fn absent(&self, d: &Driver) -> KernelError {
        let hint = match d.purpose {
            Purpose::Transport => format!(
                "the virtio transports need it: use -transport isa, or a kernel with {}=y or =m",
                d.option
            ),
            Purpose::Modules => format!(
                "modules on demand need it: use a kernel with {}=y or =m",
                d.option
            ),
            Purpose::Net => format!(
                "-net user needs a virtio NIC: use a kernel with {}=y or =m",
                d.option
            ),
            Purpose::Share => "-hostRoot and -share need 9p and overlayfs: use a kernel that has \
                 them, such as Debian's generic ones (linux-image-amd64, linux-image-arm64); \
                 the cloud kernels have no 9p"
                .to_string(),
        };
        KernelError::DriverAbsent {
            release: self.release.clone().unwrap_or_else(|| "?".into()),
            option: d.option,
            driver: d.module,
            hint,
        }
    }

    /// The module files to load for `transport` and the user's modules, in
    /// order: the transport's drivers with their dependencies, then each
    /// `-addModule` (names with their dependencies; paths as given) not
    /// already among them. Also notes drivers that may be missing, for when
    /// the guest does not answer.
    pub fn plan_modules(
        &self,
        drivers: &[Driver],
        user: &[crate::config::ModuleRef],
    ) -> Result<ModulePlan, KernelError> {
        use crate::config::ModuleRef;
        let (transport, doubt) = match &self.modules {
            Some(tree) => self.drivers_from_tree(tree, drivers)?,
            None => (Vec::new(), self.drivers_without_tree(drivers)?),
        };
        let mut files = transport.clone();
        for m in user {
            let found = match m {
                ModuleRef::Path(p) => vec![p.clone()],
                ModuleRef::Name(name) => self
                    .modules
                    .as_ref()
                    .ok_or_else(|| KernelError::NoTreeForName(name.clone()))?
                    .resolve(&[name])?,
            };
            for f in found {
                if !files.contains(&f) {
                    files.push(f);
                }
            }
        }
        let user = files.split_off(transport.len());
        Ok(ModulePlan {
            transport: files,
            user,
            doubt,
        })
    }

    /// The files of `drivers` (with their dependencies) in `tree`, and a
    /// doubt about one that is neither there nor known to be built in. A
    /// driver the kernel's config says it lacks is an error.
    fn drivers_from_tree(
        &self,
        tree: &ModuleTree,
        drivers: &[Driver],
    ) -> Result<(Vec<PathBuf>, Option<String>), KernelError> {
        let option = |d: &Driver| self.config.as_ref().and_then(|c| c.get(d.option));
        let (known, unknown): (Vec<&Driver>, Vec<&Driver>) = drivers
            .iter()
            .partition(|d| tree.is_builtin(d.module) || tree.file(d.module).is_some());
        if let Some(d) = unknown
            .iter()
            .find(|d| self.config.is_some() && option(d).is_none())
        {
            return Err(self.absent(d));
        }
        let wanted: Vec<&str> = known.iter().map(|d| d.module).collect();
        let mut files: Vec<PathBuf> = Vec::new();
        for f in tree.resolve(&wanted)? {
            if !files.contains(&f) {
                files.push(f);
            }
        }
        // Not in the tree nor listed as built in: built in by a kernel
        // without modules.builtin, or missing.
        let doubt = unknown.iter().find(|d| option(d) != Some("y")).map(|d| {
            format!(
                "{} may be missing: it is neither in {} nor listed as built in",
                d.module,
                tree.root.display()
            )
        });
        Ok((files, doubt))
    }

    /// Without a module tree, `drivers` must be built in: an error for one
    /// the config has as a module or not at all; a doubt when there is no
    /// config to tell.
    fn drivers_without_tree(&self, drivers: &[Driver]) -> Result<Option<String>, KernelError> {
        let mut doubt = None;
        for d in drivers {
            let value = self
                .config
                .as_ref()
                .map(|c| c.get(d.option).unwrap_or("not set"));
            match value {
                Some("y") => {}
                Some("not set") => return Err(self.absent(d)),
                Some(value) => {
                    return Err(KernelError::DriverMissing {
                        release: self.release.clone().unwrap_or_else(|| "?".into()),
                        option: d.option,
                        value: value.to_string(),
                        driver: d.module,
                        looked: self
                            .looked
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                None => {
                    doubt.get_or_insert_with(|| {
                        format!(
                            "{} may be missing: the kernel's config and module tree were not found",
                            d.module
                        )
                    });
                }
            }
        }
        Ok(doubt)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::image::*;
    use super::tree::*;
    use super::*;
    use crate::config::Transport;

    #[test]
    fn bzimage_header_release() {
        let mut head = vec![0u8; 0x1000];
        head[0x202..0x206].copy_from_slice(b"HdrS");
        head[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let banner = b"6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        head[0x500..0x500 + banner.len()].copy_from_slice(banner);
        assert_eq!(
            bzimage_release(&head).as_deref(),
            Some("6.1.0-56-cloud-amd64")
        );
        head[0x202] = b'X';
        assert_eq!(bzimage_release(&head), None);
    }

    #[test]
    fn image_headers_tell_the_architecture() {
        let p = Path::new("k");
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(image_arch(&img, p).unwrap(), Some(Arch::Amd64));
        let mut img = vec![0u8; 0x400];
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(image_arch(&img, p).unwrap(), Some(Arch::Arm64));
        img[0x38..0x3c].copy_from_slice(b"RSC\x05");
        assert_eq!(image_arch(&img, p).unwrap(), Some(Arch::Riscv64));
        let mut pe = vec![0u8; 0x400];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x84..0x86].copy_from_slice(&0x5064u16.to_le_bytes());
        assert_eq!(image_arch(&pe, p).unwrap(), Some(Arch::Riscv64));
        assert_eq!(image_arch(b"\x1f\x8b\x08rest", p).unwrap(), None);
        assert!(matches!(
            image_arch(b"hello world", p),
            Err(KernelError::NotAKernel(_))
        ));
        let elf = std::fs::read("/usr/bin/true").unwrap();
        assert_eq!(image_arch(&elf, p).unwrap(), Some(Arch::Amd64));
    }

    /// The Debian kernel of `arch` fetched by scripts/setup (amd64:
    /// `$VIRTRUN_TEST_KERNEL` first). The test fails, never skips, when it
    /// is missing.
    pub(crate) fn debian_kernel(arch: &str) -> PathBuf {
        let path = std::env::var_os("VIRTRUN_TEST_KERNEL")
            .filter(|_| arch == "amd64")
            .map(PathBuf::from)
            .or_else(|| crate::cache::dir().map(|c| c.join(format!("kernels/{arch}/vmlinuz"))))
            .unwrap();
        assert!(
            path.exists(),
            "{}: no test kernel, run scripts/setup",
            path.display()
        );
        path
    }

    #[test]
    fn real_debian_bzimage() {
        let image = debian_kernel("amd64");
        let (arch, release) = read_image(&image).unwrap();
        assert_eq!(arch, Some(Arch::Amd64));
        let release = release.unwrap();
        let real = std::fs::canonicalize(&image).unwrap();
        let name = real.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("vmlinuz-{release}"));
        let kernel = Kernel::inspect(&image, None).unwrap();
        let tree = kernel
            .modules
            .as_ref()
            .expect("module tree next to the kernel");
        assert_eq!(
            kernel.config.as_ref().unwrap().get("CONFIG_VIRTIO_CONSOLE"),
            Some("m")
        );
        // No modules.dep in the package: the order comes from .modinfo.
        let order = tree.resolve(&["virtio_pci", "virtio_console"]).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p).unwrap()).collect();
        let pos = |n: &str| {
            names
                .iter()
                .position(|x| x == n)
                .unwrap_or_else(|| panic!("{n} in {names:?}"))
        };
        assert!(pos("virtio_ring") < pos("virtio"));
        assert!(pos("virtio") < pos("virtio_pci"));
        assert!(pos("virtio_pci_modern_dev") < pos("virtio_pci"));
        assert!(pos("virtio_pci") < pos("virtio_console") || pos("virtio") < pos("virtio_console"));
        assert!(tree.is_builtin("8250"));
    }

    #[test]
    fn real_debian_arm64_image_and_riscv64_pe() {
        for (arch, want, release_start) in [
            ("arm64", Arch::Arm64, "6.1."),
            ("riscv64", Arch::Riscv64, "6.12."),
        ] {
            let image = debian_kernel(arch);
            let (got, release) = read_image(&image).unwrap();
            assert_eq!(got, Some(want), "{arch}");
            let release = release.unwrap();
            assert!(release.starts_with(release_start), "{arch}: {release}");
            // The banner inside the image says the same as the file name.
            let bytes = std::fs::read(&image).unwrap();
            assert_eq!(
                banner_release(&bytes).as_deref(),
                Some(release.as_str()),
                "{arch}"
            );
            let kernel = Kernel::inspect(&image, None).unwrap();
            let tree = kernel.modules.expect("module tree next to the kernel");
            // riscv64: merged /usr and .ko.xz, read through xz.
            let order = tree.resolve(&["virtio_mmio", "virtio_console"]).unwrap();
            assert!(!order.is_empty(), "{arch}");
        }
    }

    #[test]
    fn modular_virtio_without_a_tree_fails_before_boot() {
        let kernel = Kernel {
            image: PathBuf::from("/nowhere/vmlinuz"),
            arch: Some(Arch::Amd64),
            release: Some("6.1.0-test".into()),
            config: Some(KernelConfig::parse(
                "CONFIG_VIRTIO_PCI=m\nCONFIG_VIRTIO_CONSOLE=m\n",
            )),
            modules: None,
            looked: vec!["/nowhere/lib/modules/6.1.0-test".into()],
        };
        let err = kernel
            .plan_modules(transport_drivers(Transport::Pci), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("CONFIG_VIRTIO_PCI=m"), "{err}");
        assert!(err.contains("-transport isa"), "{err}");
        assert!(
            kernel
                .plan_modules(transport_drivers(Transport::Isa), &[])
                .unwrap()
                .transport
                .is_empty()
        );
        let unknown = Kernel {
            config: None,
            ..kernel
        };
        let plan = unknown
            .plan_modules(transport_drivers(Transport::Pci), &[])
            .unwrap();
        assert!(plan.transport.is_empty());
        assert!(plan.doubt.unwrap().contains("virtio_pci"));
    }

    #[test]
    fn cycles_and_missing_dependencies_are_errors() {
        let dir = std::env::temp_dir().join(format!("virtrun-kernel-cycle-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        for m in ["x", "y", "z"] {
            std::fs::write(dir.join(format!("kernel/{m}.ko")), b"").unwrap();
        }
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/x.ko: kernel/y.ko\nkernel/y.ko: kernel/x.ko\nkernel/z.ko: kernel/gone.ko\n",
        )
        .unwrap();
        let tree = ModuleTree::open(&dir).unwrap();
        let cycle = tree.resolve(&["x"]);
        let missing = tree.resolve(&["z"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(cycle, Err(KernelError::Cycle(_))), "{cycle:?}");
        assert!(
            matches!(missing, Err(KernelError::UnknownModule { .. })),
            "{missing:?}"
        );
    }

    #[test]
    fn banner_release_skips_format_strings() {
        let image = b"xxLinux version %s (%s)\0yyLinux version 6.12.38+deb13-riscv64 (gcc) #1";
        assert_eq!(
            banner_release(image).as_deref(),
            Some("6.12.38+deb13-riscv64")
        );
        assert_eq!(banner_release(b"nothing here"), None);
    }

    #[test]
    fn config_values() {
        let c = KernelConfig::parse(
            "# comment\nCONFIG_VIRTIO=m\nCONFIG_SERIAL_8250=y\n# CONFIG_FOO is not set\nCONFIG_S=\"x\"\n",
        );
        assert_eq!(c.get("CONFIG_VIRTIO"), Some("m"));
        assert_eq!(c.get("CONFIG_SERIAL_8250"), Some("y"));
        assert_eq!(c.get("CONFIG_FOO"), None);
        assert_eq!(c.get("CONFIG_S"), Some("\"x\""));
    }

    #[test]
    fn module_names() {
        assert_eq!(
            module_name(Path::new("a/virtio-rng.ko")).as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(
            module_name(Path::new("virtio_mmio.ko.xz")).as_deref(),
            Some("virtio_mmio")
        );
        assert_eq!(module_name(Path::new("README")), None);
    }

    fn tree_with_dep_file(dir: &Path) -> ModuleTree {
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        for m in ["a", "b", "c-d", "e"] {
            std::fs::write(dir.join(format!("kernel/{m}.ko")), b"").unwrap();
        }
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/a.ko: kernel/b.ko kernel/c-d.ko\nkernel/b.ko: kernel/c-d.ko\nkernel/c-d.ko:\nkernel/e.ko: kernel/builtin.ko\n",
        )
        .unwrap();
        std::fs::write(dir.join("modules.builtin"), "kernel/builtin.ko\n").unwrap();
        ModuleTree::open(dir).unwrap()
    }

    #[test]
    fn modules_dep_orders_dependencies_first() {
        let dir = std::env::temp_dir().join(format!("virtrun-kernel-test-{}", std::process::id()));
        let tree = tree_with_dep_file(&dir);
        let order = tree.resolve(&["a", "e", "b"]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<_> = order.iter().map(|p| module_name(p).unwrap()).collect();
        assert_eq!(names, ["c_d", "b", "a", "e"]);
        assert!(tree.is_builtin("builtin"));
        assert!(matches!(
            tree.resolve(&["nope"]),
            Err(KernelError::UnknownModule { .. })
        ));
    }
}
