//! What a kernel image tells about itself: its release, its build config and
//! its module tree, and which modules a transport needs from that tree.
//!
//! Stock distro kernels build the virtio drivers as modules and their packages
//! ship no `modules.dep` (it is generated when the package is installed), so
//! the dependency graph is read from each module's `.modinfo` section when
//! `modules.dep` is absent.

use crate::config::Transport;
use crate::inspect::elf::Arch;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
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

/// The architecture a kernel image was built for, from its header: x86 boot
/// protocol (bzImage), arm64/riscv64 `Image` magic, EFI/PE machine or ELF
/// machine. `Ok(None)` for a compressed image whose header is not readable
/// without unpacking it (e.g. `Image.gz`).
pub fn image_arch(head: &[u8], path: &Path) -> Result<Option<Arch>, KernelError> {
    let at = |range: std::ops::Range<usize>| head.get(range);
    if at(0x202..0x206) == Some(b"HdrS") {
        return Ok(Some(Arch::Amd64));
    }
    match at(0x38..0x3c) {
        Some(b"ARM\x64") => return Ok(Some(Arch::Arm64)),
        Some(b"RSC\x05") => return Ok(Some(Arch::Riscv64)),
        _ => {}
    }
    if head.starts_with(b"\x7fELF") {
        let machine = u16::from_le_bytes([
            head.get(18).copied().unwrap_or(0),
            head.get(19).copied().unwrap_or(0),
        ]);
        return Arch::from_machine(machine)
            .map(Some)
            .ok_or_else(|| KernelError::NotAKernel(path.to_path_buf()));
    }
    if head.starts_with(b"MZ") {
        let pe =
            at(0x3c..0x40).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) as usize;
        if at(pe..pe + 4) == Some(b"PE\0\0") {
            let machine = at(pe + 4..pe + 6).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
            return match machine {
                0x8664 => Ok(Some(Arch::Amd64)),
                0xaa64 => Ok(Some(Arch::Arm64)),
                0x5064 => Ok(Some(Arch::Riscv64)),
                _ => Err(KernelError::NotAKernel(path.to_path_buf())),
            };
        }
    }
    // gzip, zstd, xz, lz4: a compressed Image, whose header is inside.
    const COMPRESSED: [&[u8]; 4] = [
        b"\x1f\x8b",
        b"\x28\xb5\x2f\xfd",
        b"\xfd7zXZ",
        b"\x02\x21\x4c\x18",
    ];
    if COMPRESSED.iter().any(|m| head.starts_with(m)) {
        return Ok(None);
    }
    Err(KernelError::NotAKernel(path.to_path_buf()))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KernelError + '_ {
    move |e| KernelError::Io(path.to_path_buf(), e)
}

/// Kernel modules spell names with `_`; file names may use `-`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file: its name without `.ko` and compression suffix.
fn module_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))?;
    Some(normalize(stem))
}

/// Reads the architecture and the release of a kernel image: the release
/// from the x86 boot header's `kernel_version` field, else from the
/// `Linux version` banner of an uncompressed image.
pub fn read_image(image: &Path) -> Result<(Option<Arch>, Option<String>), KernelError> {
    let mut file = File::open(image).map_err(io_err(image))?;
    let mut head = vec![0u8; 0x10000];
    let n = read_up_to(&mut file, &mut head).map_err(io_err(image))?;
    head.truncate(n);
    let arch = image_arch(&head, image)?;
    if let Some(release) = bzimage_release(&head) {
        return Ok((arch, Some(release)));
    }
    if let Some(release) = release_from_name(image) {
        return Ok((arch, Some(release)));
    }
    // SAFETY: the file is only read through the map; a concurrent writer
    // could only make us read garbage, which the parsing below tolerates.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(image))?;
    Ok((arch, banner_release(&map)))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    while total < buf.len() {
        match file.read(&mut buf[total..])? {
            0 => break,
            n => total += n,
        }
    }
    Ok(total)
}

/// The release from a distribution's file name (`vmlinuz-<release>`,
/// `vmlinux-<release>`, `Image-<release>`), trusted only when its
/// `config-<release>` lies beside it: cheaper than scanning tens of
/// megabytes of an uncompressed image for its banner.
fn release_from_name(image: &Path) -> Option<String> {
    let real = std::fs::canonicalize(image).ok()?;
    let name = real.file_name()?.to_str()?;
    let release = ["vmlinuz-", "vmlinux-", "Image-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    real.with_file_name(format!("config-{release}"))
        .is_file()
        .then(|| release.to_string())
}

/// The release from an x86 bzImage header (boot protocol ≥ 2.00).
fn bzimage_release(head: &[u8]) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let offset = u16::from_le_bytes([*head.get(0x20e)?, *head.get(0x20f)?]) as usize;
    if offset == 0 {
        return None;
    }
    let text = head.get(offset + 0x200..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    std::str::from_utf8(&text[..end]).ok().map(str::to_string)
}

/// The release from a `Linux version <release> ...` banner.
fn banner_release(image: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    memchr::memmem::find_iter(image, BANNER).find_map(|pos| {
        let rest = &image[pos + BANNER.len()..];
        let end = rest.iter().take(256).position(|&b| b == b' ')?;
        let release = std::str::from_utf8(&rest[..end]).ok()?;
        // Skip format strings such as "Linux version %s".
        (release.chars().next()?.is_ascii_digit()).then(|| release.to_string())
    })
}

/// The kernel's build configuration (`config-<release>` next to the image).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    options: HashMap<String, String>,
}

impl KernelConfig {
    /// Parses a `.config`-style text.
    pub fn parse(text: &str) -> Self {
        let options = text
            .lines()
            .filter(|l| l.starts_with("CONFIG_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KernelConfig { options }
    }

    /// The value of an option: `y`, `m`, a string, or `None` when not set.
    pub fn get(&self, option: &str) -> Option<&str> {
        self.options.get(option).map(String::as_str)
    }
}

/// An installed or extracted `lib/modules/<release>` tree.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    /// The tree's root.
    pub root: PathBuf,
    builtin: HashSet<String>,
    files: HashMap<String, PathBuf>,
    /// Dependencies from `modules.dep`, when the tree has one.
    dep_file: Option<HashMap<String, Vec<String>>>,
}

impl ModuleTree {
    /// Reads the tree at `root`: `modules.builtin`, and `modules.dep` or else
    /// the module files themselves.
    pub fn open(root: &Path) -> Result<Self, KernelError> {
        let builtin = match std::fs::read_to_string(root.join("modules.builtin")) {
            Ok(text) => text
                .lines()
                .filter_map(|l| module_name(Path::new(l.trim())))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(KernelError::Io(root.join("modules.builtin"), e)),
        };
        let mut files = HashMap::new();
        let mut dep_file = None;
        match std::fs::read_to_string(root.join("modules.dep")) {
            Ok(text) => {
                let mut deps = HashMap::new();
                for line in text.lines() {
                    let Some((module, needs)) = line.split_once(':') else {
                        continue;
                    };
                    let Some(name) = module_name(Path::new(module)) else {
                        continue;
                    };
                    files.insert(name.clone(), root.join(module));
                    let needs = needs
                        .split_whitespace()
                        .filter_map(|d| module_name(Path::new(d)))
                        .collect();
                    deps.insert(name, needs);
                }
                dep_file = Some(deps);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // modules.order lists every module of the build: one read
                // instead of a walk over thousands of files.
                match std::fs::read_to_string(root.join("modules.order")) {
                    Ok(text) => files.extend(text.lines().filter_map(|l| {
                        let listed = root.join(l.trim());
                        Some((module_name(&listed)?, listed))
                    })),
                    Err(_) => collect_modules(&root.join("kernel"), &mut files)?,
                }
            }
            Err(e) => return Err(KernelError::Io(root.join("modules.dep"), e)),
        }
        Ok(ModuleTree {
            root: root.to_path_buf(),
            builtin,
            files,
            dep_file,
        })
    }

    /// Every module of the tree: its name and file.
    pub fn modules(&self) -> impl Iterator<Item = (&str, PathBuf)> {
        self.files
            .iter()
            .filter_map(|(name, listed)| Some((name.as_str(), compressed_variant(listed)?)))
    }

    /// Whether the tree came with its own `modules.dep`.
    pub fn has_dep_file(&self) -> bool {
        self.dep_file.is_some()
    }

    /// Whether `name` is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    /// The file of module `name`, if the tree has it. A listed `x.ko` may be
    /// shipped as `x.ko.xz`; only the modules actually used are looked up.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        compressed_variant(self.files.get(&normalize(name))?)
    }

    fn depends(&self, name: &str) -> Result<Vec<String>, KernelError> {
        if let Some(deps) = &self.dep_file {
            return Ok(deps.get(name).cloned().unwrap_or_default());
        }
        let path = self.file(name).ok_or_else(|| self.unknown(name))?;
        modinfo_depends(&path)
    }

    fn unknown(&self, name: &str) -> KernelError {
        KernelError::UnknownModule {
            name: name.to_string(),
            tree: self.root.display().to_string(),
        }
    }

    /// The files of `names` and everything they depend on, dependencies
    /// first, each once; built-in modules are skipped.
    pub fn resolve(&self, names: &[&str]) -> Result<Vec<PathBuf>, KernelError> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for name in names {
            self.visit(&normalize(name), &mut Vec::new(), &mut done, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut HashSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<(), KernelError> {
        if done.contains(name) || self.is_builtin(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(KernelError::Cycle(name.to_string()));
        }
        let path = self.file(name).ok_or_else(|| self.unknown(name))?;
        stack.push(name.to_string());
        for dep in self.depends(name)? {
            self.visit(&dep, stack, done, order)?;
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(path);
        Ok(())
    }
}

/// The file `listed` names, or its compressed variant: `modules.order`
/// names `x.ko` where the package ships `x.ko.xz`.
fn compressed_variant(listed: &Path) -> Option<PathBuf> {
    if listed.extension().is_some_and(|e| e != "ko") {
        return listed.is_file().then(|| listed.to_path_buf());
    }
    ["", ".xz", ".zst", ".gz"].iter().find_map(|ext| {
        let mut p = listed.as_os_str().to_os_string();
        p.push(ext);
        let p = PathBuf::from(p);
        p.is_file().then_some(p)
    })
}

/// Collects every module file below `dir`, by module name.
fn collect_modules(dir: &Path, files: &mut HashMap<String, PathBuf>) -> Result<(), KernelError> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(io_err(dir))?,
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io_err(&path))?.is_dir() {
            collect_modules(&path, files)?;
        } else if let Some(name) = module_name(&path) {
            files.insert(name, path);
        }
    }
    Ok(())
}

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

impl KernelConfig {
    /// Whether `finit_module` of this kernel takes files compressed like
    /// that (`CONFIG_MODULE_DECOMPRESS` and the matching algorithm).
    pub fn can_decompress(&self, c: Compression) -> bool {
        self.get("CONFIG_MODULE_DECOMPRESS") == Some("y")
            && self.get(c.kernel_option()) == Some("y")
    }
}

/// The `depends=` list of a module's `.modinfo` section.
fn modinfo_depends(path: &Path) -> Result<Vec<String>, KernelError> {
    Ok(modinfo(path)?
        .into_iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, deps)| {
            deps.split(',')
                .filter(|d| !d.is_empty())
                .map(normalize)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// The `key=value` entries of a module's `.modinfo` section, in order.
pub fn modinfo(path: &Path) -> Result<Vec<(String, String)>, KernelError> {
    modinfo_of(&read_module(path)?, path)
}

/// [`modinfo`] of the module file `path` whose (decompressed) content is
/// `data`.
pub fn modinfo_of(data: &[u8], path: &Path) -> Result<Vec<(String, String)>, KernelError> {
    let bad = |msg: String| KernelError::BadModule(path.to_path_buf(), msg);
    if !data.starts_with(b"\x7fELF") {
        return Err(bad("not an ELF object".into()));
    }
    let elf = goblin::elf::Elf::parse(data).map_err(|e| bad(e.to_string()))?;
    let section = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))
        .ok_or_else(|| bad("no .modinfo section".into()))?;
    let start = section.sh_offset as usize;
    let info = data
        .get(start..start + section.sh_size as usize)
        .ok_or_else(|| bad(".modinfo outside the file".into()))?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// A driver a transport needs in the guest, and the config option that
/// builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driver {
    /// Module name.
    pub module: &'static str,
    /// Kernel config option.
    pub option: &'static str,
    /// What needs it, and so what helps when it is missing.
    pub purpose: Purpose,
}

/// Why a run needs a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The channels of a virtio transport.
    Transport,
    /// The host's files (`-hostRoot`, `-share`): 9p and the overlay.
    Share,
    /// The module tree's image (modules on demand): a virtio disk and ext4.
    Modules,
    /// The NIC of `-net user`.
    Net,
}

const VIRTIO_PCI: Driver = Driver {
    module: "virtio_pci",
    option: "CONFIG_VIRTIO_PCI",
    purpose: Purpose::Transport,
};
const VIRTIO_MMIO: Driver = Driver {
    module: "virtio_mmio",
    option: "CONFIG_VIRTIO_MMIO",
    purpose: Purpose::Transport,
};

/// The drivers the channels of `transport` need, in load order.
pub fn transport_drivers(transport: Transport) -> &'static [Driver] {
    const CONSOLE: Driver = Driver {
        module: "virtio_console",
        option: "CONFIG_VIRTIO_CONSOLE",
        purpose: Purpose::Transport,
    };
    match transport {
        Transport::Isa => &[],
        Transport::Pci => &[VIRTIO_PCI, CONSOLE],
        Transport::Mmio => &[VIRTIO_MMIO, CONSOLE],
    }
}

/// The driver of the disk that carries a warm run's files.
pub const RUN_DISK_DRIVER: Driver = Driver {
    module: "virtio_blk",
    option: "CONFIG_VIRTIO_BLK",
    purpose: Purpose::Transport,
};

/// What a run needs of the guest kernel besides its transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The host's files over 9p (`-hostRoot`, `-share`).
    pub share: bool,
    /// The overlay file system (`-hostRoot`).
    pub overlay: bool,
    /// The module tree's image (modules on demand).
    pub modules: bool,
    /// A NIC (`-net user`).
    pub net: bool,
}

/// The drivers a run needs: the transport's, then for the host's files
/// 9p over virtio (on PCI unless the transport is mmio), the overlay file
/// system, the module tree's disk, the NIC.
pub fn needed_drivers(transport: Transport, needs: Needs) -> Vec<Driver> {
    let Needs {
        share,
        overlay,
        modules,
        net,
    } = needs;
    let mut drivers = transport_drivers(transport).to_vec();
    let bus = match transport {
        Transport::Mmio => VIRTIO_MMIO,
        Transport::Pci | Transport::Isa => VIRTIO_PCI,
    };
    if (share || modules || net) && !drivers.iter().any(|d| d.module == bus.module) {
        drivers.push(Driver {
            purpose: if share {
                Purpose::Share
            } else if modules {
                Purpose::Modules
            } else {
                Purpose::Net
            },
            ..bus
        });
    }
    if modules {
        drivers.push(Driver {
            module: "virtio_blk",
            option: "CONFIG_VIRTIO_BLK",
            purpose: Purpose::Modules,
        });
        // ext4 of 6.1 loads crc32c at every mount, also without
        // metadata checksums; with crypto as modules it would ask for it
        // before the helper has a tree to take it from.
        drivers.push(Driver {
            module: "crc32c_generic",
            option: "CONFIG_CRYPTO_CRC32C",
            purpose: Purpose::Modules,
        });
        drivers.push(Driver {
            module: "ext4",
            option: "CONFIG_EXT4_FS",
            purpose: Purpose::Modules,
        });
    }
    if share {
        drivers.push(Driver {
            module: "9pnet_virtio",
            option: "CONFIG_NET_9P_VIRTIO",
            purpose: Purpose::Share,
        });
        drivers.push(Driver {
            module: "9p",
            option: "CONFIG_9P_FS",
            purpose: Purpose::Share,
        });
    }
    if overlay {
        drivers.push(Driver {
            module: "overlay",
            option: "CONFIG_OVERLAY_FS",
            purpose: Purpose::Share,
        });
    }
    if net {
        drivers.push(Driver {
            module: "virtio_net",
            option: "CONFIG_VIRTIO_NET",
            purpose: Purpose::Net,
        });
    }
    drivers
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
        let mut files: Vec<PathBuf> = Vec::new();
        let push = |list: Vec<PathBuf>, files: &mut Vec<PathBuf>| {
            for f in list {
                if !files.contains(&f) {
                    files.push(f);
                }
            }
        };
        let mut doubt = None;
        match &self.modules {
            Some(tree) => {
                let (known, unknown): (Vec<&Driver>, Vec<&Driver>) = drivers
                    .iter()
                    .partition(|d| tree.is_builtin(d.module) || tree.file(d.module).is_some());
                if let Some(d) = unknown.iter().find(|d| {
                    self.config.as_ref().and_then(|c| c.get(d.option)).is_none()
                        && self.config.is_some()
                }) {
                    return Err(self.absent(d));
                }
                let wanted: Vec<&str> = known.iter().map(|d| d.module).collect();
                push(tree.resolve(&wanted)?, &mut files);
                // Not in the tree nor listed as built in: built in by a
                // kernel without modules.builtin, or missing.
                if let Some(d) = unknown
                    .iter()
                    .find(|d| self.config.as_ref().and_then(|c| c.get(d.option)) != Some("y"))
                {
                    doubt = Some(format!(
                        "{} may be missing: it is neither in {} nor listed as built in",
                        d.module,
                        tree.root.display()
                    ));
                }
            }
            None => {
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
            }
        }
        let transport_count = files.len();
        for m in user {
            match m {
                ModuleRef::Path(p) => push(vec![p.clone()], &mut files),
                ModuleRef::Name(name) => {
                    let tree = self
                        .modules
                        .as_ref()
                        .ok_or_else(|| KernelError::NoTreeForName(name.clone()))?;
                    push(tree.resolve(&[name])?, &mut files);
                }
            }
        }
        let user = files.split_off(transport_count);
        Ok(ModulePlan {
            transport: files,
            user,
            doubt,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
