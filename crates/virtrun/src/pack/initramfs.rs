//! The initramfs: first a plan of what goes where (pure, no I/O), then the
//! archive written from it.
//!
//! Layout (docs/reference.md#hermetic-guest-the-default): `/init`, `/main`,
//! `/data/<file>`, `/lib/<library>`, `/lib/modules/NNNN-<module>`,
//! `/etc/hosts`, the empty mount points, and every host directory a library
//! came from as a symlink to `/lib`, so that the interpreter path and RUNPATHs
//! resolve inside the guest. Beyond the original
//! (docs/reference.md#what-the-guest-sees), what every Linux program may
//! assume: `/etc/passwd` and `/etc/group` with root and nobody,
//! `/etc/hostname`, `/var/tmp`, and `/tmp` and `/var/tmp` writable by anyone.

use crate::inspect::kernel::{Compression, Kernel};
use crate::inspect::libs::Resolved;
use crate::pack::cpio;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use virtrun_protocol as proto;

/// Where the bytes of a file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Bytes made for this run (configuration, `/etc/hosts`).
    Owned(Vec<u8>),
    /// A host file, read (through symlinks) when the archive is written.
    Host(PathBuf),
    /// Bytes built into virtrun, compressed (the guest init): unpacked only
    /// when an archive with them is written, which a restored guest needs
    /// none of.
    Packed(&'static [u8]),
    /// A compressed host file (a kernel module the guest kernel cannot
    /// decompress), decompressed when the archive is written.
    Compressed(PathBuf),
}

/// One node of the guest's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file; `perm` None takes the host file's permission bits.
    File {
        /// Where the bytes come from.
        content: Content,
        /// Permission bits; None copies them from the host file.
        perm: Option<u32>,
    },
    /// A symbolic link with this target.
    Symlink(String),
    /// A character device node.
    CharDev(u32, u32),
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Two inputs want the same guest path.
    #[error("{path}: wanted by both {first} and {second}")]
    Conflict {
        /// Guest path.
        path: String,
        /// What was there.
        first: String,
        /// What wanted it too.
        second: String,
    },
    /// A path has no usable file name.
    #[error("{0}: has no file name")]
    NoName(PathBuf),
}

/// Why the archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reading a host file failed.
    #[error("{0}: {1}")]
    Read(PathBuf, io::Error),
    /// Writing the archive failed.
    #[error("writing initramfs: {0}")]
    Write(#[from] io::Error),
}

/// A kernel module for `/lib/modules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// File name in the guest (its extension tells the init whether the
    /// kernel must decompress it).
    pub name: String,
    /// The bytes.
    pub content: Content,
}

impl Module {
    /// A module as the guest gets it from `kernel`: as it is when the
    /// kernel can load it like that, decompressed when the archive is
    /// written when the kernel cannot decompress it itself (or its config
    /// is unknown).
    pub fn for_kernel(kernel: &Kernel, path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match Compression::of(path) {
            Some(c) if !kernel.config.as_ref().is_some_and(|k| k.can_decompress(c)) => {
                let plain = name
                    .rsplit_once('.')
                    .map_or(name.as_str(), |(stem, _)| stem);
                Module {
                    name: plain.to_string(),
                    content: Content::Compressed(path.to_path_buf()),
                }
            }
            _ => Module {
                name,
                content: Content::Host(path.to_path_buf()),
            },
        }
    }

    /// A module file packed as it is.
    pub fn file(path: &Path) -> Result<Self, PlanError> {
        Ok(Module {
            name: file_name(path)?,
            content: Content::Host(path.to_path_buf()),
        })
    }
}

/// Where the guest has the binary under its own name: `/data/<name>`, a
/// link to `/main`, unless an `-addFile` file has that name. Its `argv[0]`:
/// a path the guest can execute (a test may run itself again through it,
/// as Go's tests do with `os.Args[0]`), whose base name is the binary's own
/// (a multi-call binary such as busybox picks its applet by it), and on
/// `PATH`.
pub fn main_link(binary: &Path, files: &[PathBuf]) -> Option<String> {
    let name = binary.file_name()?;
    let taken = files.iter().any(|f| f.file_name() == Some(name));
    (!taken).then(|| format!("{}/{}", proto::DATA_DIR, name.to_string_lossy()))
}

/// What goes into the archive.
#[derive(Debug)]
pub struct Input<'a> {
    /// The init; None in standalone mode, where `/init` links to `/main`.
    pub init: Option<Content>,
    /// The init's configuration (wrapped mode).
    pub config: Option<Vec<u8>>,
    /// The init's boot configuration (wrapped mode).
    pub boot: Option<Vec<u8>>,
    /// The standalone loader's configuration: `init` is then the loader in
    /// front of the binary, and `transport_modules` are its to load.
    pub loader: Option<Vec<u8>>,
    /// The binary, for `/main`; `None` when the guest runs it from the host.
    pub main: Option<&'a Path>,
    /// `-addFile` files.
    pub files: &'a [PathBuf],
    /// Kernel modules for `/lib/modules`, in load order.
    pub modules: &'a [Module],
    /// The modules to load at boot, before the channels open, in load
    /// order: the transport's drivers and what shares and the module tree
    /// need (the wrapped init's), or the transport's (the standalone
    /// loader's).
    pub transport_modules: &'a [Module],
    /// Shared libraries of the binary and the files.
    pub libs: &'a Resolved,
}

/// The planned content of the archive: guest path (without leading `/`) → node.
/// Sorted paths put every directory before its entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    entries: BTreeMap<String, Node>,
}

fn describe(node: &Node) -> String {
    match node {
        Node::Dir => "a directory".into(),
        Node::File {
            content: Content::Host(p),
            ..
        } => p.display().to_string(),
        Node::File { .. } => "a generated file".into(),
        Node::Symlink(t) => format!("a symlink to {t}"),
        Node::CharDev(..) => "a device node".into(),
    }
}

fn file_name(path: &Path) -> Result<String, PlanError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| PlanError::NoName(path.to_path_buf()))
}

/// `/etc/hosts`: localhost, and the guest's host name as Debian lists it.
fn hosts() -> Vec<u8> {
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{0}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        proto::GUEST_HOSTNAME
    )
    .into_bytes()
}

/// `/etc/passwd`: what every Linux program may look up (`getpwuid(0)`), as
/// Debian has it; there is no shell in the guest, but programs expect the
/// field.
const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

/// `/etc/group`, to match.
const GROUP: &[u8] = b"root:x:0:\nnogroup:x:65534:\n";

/// Directories anyone may write to (mode 1777, as on any Linux system).
const WORLD_WRITABLE: [&str; 2] = ["tmp", "var/tmp"];

/// The mode of directory `path` in the archive.
fn dir_mode(path: &str) -> u32 {
    if WORLD_WRITABLE.contains(&path) {
        0o1777
    } else {
        0o755
    }
}

impl Plan {
    /// Plans the archive for `input`.
    pub fn new(input: &Input<'_>) -> Result<Plan, PlanError> {
        let mut plan = Plan::default();
        for dir in [
            "dev", "proc", "sys", "tmp", "run", "root", "data", "etc", "lib", "var/tmp",
        ] {
            plan.add(dir, Node::Dir)?;
        }
        plan.add("dev/console", Node::CharDev(5, 1))?;
        // Before devtmpfs is mounted: Rust's runtime reopens closed fds 0-2 on
        // /dev/null and aborts if it cannot (a kernel without a console
        // starts init with them closed).
        plan.add("dev/null", Node::CharDev(1, 3))?;
        plan.add("etc/hosts", generated(hosts()))?;
        plan.add(
            "etc/hostname",
            generated(format!("{}\n", proto::GUEST_HOSTNAME).into()),
        )?;
        plan.add("etc/passwd", generated(PASSWD.to_vec()))?;
        plan.add("etc/group", generated(GROUP.to_vec()))?;
        plan.add(rel(proto::MODULES_DIR), Node::Dir)?;
        if let Some(main) = input.main {
            plan.add(rel(proto::MAIN_PATH), host_file(main, None))?;
        }
        match &input.init {
            Some(init) => plan.add(
                rel(proto::INIT_PATH),
                Node::File {
                    content: init.clone(),
                    perm: Some(0o755),
                },
            )?,
            None => plan.add(
                rel(proto::INIT_PATH),
                Node::Symlink(proto::MAIN_PATH.into()),
            )?,
        }
        if let Some(config) = &input.config {
            plan.add(rel(proto::CONFIG_PATH), generated(config.clone()))?;
        }
        if let Some(boot) = &input.boot {
            plan.add(rel(proto::BOOT_CONFIG_PATH), generated(boot.clone()))?;
        }
        for file in input.files {
            let path = format!("{}/{}", rel(proto::DATA_DIR), file_name(file)?);
            plan.add(&path, host_file(file, None))?;
        }
        if let Some(link) = input.main.and_then(|main| main_link(main, input.files)) {
            plan.add(rel(&link), Node::Symlink(proto::MAIN_PATH.into()))?;
        }
        if let Some(loader) = &input.loader {
            plan.add(rel(proto::LOADER_CONFIG_PATH), generated(loader.clone()))?;
        }
        plan.add_modules(proto::MODULES_DIR, input.modules)?;
        plan.add_modules(proto::TRANSPORT_MODULES_DIR, input.transport_modules)?;
        for lib in &input.libs.libs {
            let path = format!("{}/{}", rel(proto::LIB_DIR), lib.guest_name);
            plan.add(&path, host_file(&lib.host_path, Some(0o755)))?;
        }
        plan.link_lib_dirs(&input.libs.dirs)?;
        Ok(plan)
    }

    /// Adds `modules` to `dir`, numbered in load order.
    fn add_modules(&mut self, dir: &str, modules: &[Module]) -> Result<(), PlanError> {
        for (i, module) in modules.iter().enumerate() {
            let path = format!("{}/{:04}-{}", rel(dir), i + 1, module.name);
            self.add(
                &path,
                Node::File {
                    content: module.content.clone(),
                    perm: Some(0o644),
                },
            )?;
        }
        Ok(())
    }

    /// Splits the plan at the guest's save point: what the guest boots with
    /// (the init, its boot configuration and modules, the device nodes) and
    /// what the run brings after it parked (everything else). Both have
    /// every directory.
    pub fn split(self) -> (Plan, Plan) {
        let boot_only = |path: &str| {
            path == rel(proto::INIT_PATH)
                || path == rel(proto::BOOT_CONFIG_PATH)
                || path.starts_with("dev/")
                || path.starts_with(&format!("{}/", rel(proto::TRANSPORT_MODULES_DIR)))
        };
        let (mut boot, mut run) = (Plan::default(), Plan::default());
        for (path, node) in self.entries {
            if node == Node::Dir {
                run.entries.insert(path.clone(), Node::Dir);
                boot.entries.insert(path, node);
            } else if boot_only(&path) {
                boot.entries.insert(path, node);
            } else {
                run.entries.insert(path, node);
            }
        }
        (boot, run)
    }

    /// The planned entries in archive order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Adds `node` at `path`, creating missing parent directories.
    fn add(&mut self, path: &str, node: Node) -> Result<(), PlanError> {
        let mut parent = String::new();
        for part in Path::new(path)
            .parent()
            .into_iter()
            .flat_map(Path::components)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(&part.as_os_str().to_string_lossy());
            self.insert(parent.clone(), Node::Dir)?;
        }
        self.insert(path.to_string(), node)
    }

    fn insert(&mut self, path: String, node: Node) -> Result<(), PlanError> {
        match self.entries.get(&path) {
            None => {
                self.entries.insert(path, node);
                Ok(())
            }
            Some(existing) if *existing == node => Ok(()),
            Some(existing) => Err(PlanError::Conflict {
                first: describe(existing),
                second: describe(&node),
                path: format!("/{path}"),
            }),
        }
    }

    /// Makes every host library directory a symlink to `/lib`. Shorter paths
    /// first, so that a directory below one that already is a link is
    /// resolved through it instead of shadowing it.
    fn link_lib_dirs(&mut self, dirs: &[PathBuf]) -> Result<(), PlanError> {
        let lib = rel(proto::LIB_DIR);
        let mut dirs: Vec<String> = dirs
            .iter()
            .map(|d| d.to_string_lossy().trim_matches('/').to_string())
            .filter(|d| !d.is_empty())
            .collect();
        dirs.sort_by_key(|d| (d.len(), d.clone()));
        dirs.dedup();
        for dir in dirs {
            let resolved = self.resolve_links(&dir);
            if resolved == lib
                || self.entries.get(&resolved) == Some(&Node::Symlink(proto::LIB_DIR.into()))
            {
                continue;
            }
            self.add(&resolved, Node::Symlink(proto::LIB_DIR.into()))?;
        }
        Ok(())
    }

    /// Rewrites `path` through the planned directory symlinks (all of which
    /// point to `/lib`).
    fn resolve_links(&self, path: &str) -> String {
        let mut out = String::new();
        for part in path.split('/') {
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(part);
            if let Some(Node::Symlink(target)) = self.entries.get(&out)
                && out != path
            {
                out = target.trim_start_matches('/').to_string();
            }
        }
        out
    }

    /// Writes the archive to `out`, streaming file contents.
    pub fn write<W: Write>(&self, out: W) -> Result<W, WriteError> {
        let mut w = cpio::Writer::new(out);
        for (path, node) in &self.entries {
            match node {
                Node::Dir => w.dir(path, dir_mode(path))?,
                Node::Symlink(target) => w.symlink(path, target)?,
                Node::CharDev(major, minor) => w.char_dev(path, 0o600, *major, *minor)?,
                Node::File { content, perm } => {
                    let bytes: std::borrow::Cow<'_, [u8]> = match content {
                        Content::Host(src) => {
                            let read_err = |e| WriteError::Read(src.clone(), e);
                            let mut file = File::open(src).map_err(read_err)?;
                            let meta = file.metadata().map_err(read_err)?;
                            let perm = perm.unwrap_or(meta.permissions().mode() & 0o7777);
                            w.file(path, perm, meta.len(), &mut file)?;
                            continue;
                        }
                        Content::Owned(bytes) => bytes.into(),
                        Content::Packed(packed) => crate::inspect::decompress::decompress(packed)
                            .map_err(|e| {
                                WriteError::Write(io::Error::other(format!("{path}: {e}")))
                            })?
                            .into(),
                        Content::Compressed(src) => crate::inspect::kernel::read_module(src)
                            .map_err(|e| {
                                WriteError::Read(src.clone(), io::Error::other(e.to_string()))
                            })?
                            .into(),
                    };
                    let len = bytes.len() as u64;
                    w.file(path, perm.unwrap_or(0o644), len, &mut &bytes[..])?;
                }
            }
        }
        Ok(w.finish()?)
    }
}

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn generated(bytes: Vec<u8>) -> Node {
    Node::File {
        content: Content::Owned(bytes),
        perm: Some(0o644),
    }
}

fn host_file(path: &Path, perm: Option<u32>) -> Node {
    Node::File {
        content: Content::Host(path.to_path_buf()),
        perm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::kernel::KernelConfig;
    use crate::inspect::libs::Lib;

    fn resolved() -> Resolved {
        Resolved {
            libs: vec![
                Lib {
                    guest_name: "ld-linux-x86-64.so.2".into(),
                    host_path: "/lib64/ld-linux-x86-64.so.2".into(),
                },
                Lib {
                    guest_name: "libc.so.6".into(),
                    host_path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                },
            ],
            dirs: vec![
                "/lib64".into(),
                "/usr/lib/x86_64-linux-gnu".into(),
                "/lib/x86_64-linux-gnu".into(),
                "/usr/lib".into(),
                "/lib".into(),
            ],
        }
    }

    fn plan(init: Option<&[u8]>) -> Plan {
        Plan::new(&Input {
            init: init.map(|i| Content::Owned(i.to_vec())),
            config: Some(b"cfg".to_vec()),
            boot: None,
            loader: None,
            main: Some(Path::new("/usr/bin/tree")),
            files: &["/usr/bin/bash".into(), "/etc/hostname".into()],
            modules: &[
                Module::file(Path::new("/m/virtio.ko")).unwrap(),
                Module::file(Path::new("/m/a/virtio_ring.ko.xz")).unwrap(),
            ],
            transport_modules: &[],
            libs: &resolved(),
        })
        .unwrap()
    }

    #[test]
    fn the_binary_keeps_its_name_in_data_unless_a_file_has_it() {
        let bin = Path::new("/usr/bin/tree");
        assert_eq!(main_link(bin, &[]).as_deref(), Some("/data/tree"));
        let files = ["/etc/hostname".into(), "/opt/x/tree".into()];
        assert_eq!(main_link(bin, &files), None);
    }

    #[test]
    fn layout_matches_the_spec() {
        let plan = plan(Some(b"\x7fELF"));
        let get = |p: &str| plan.entries.get(p).cloned();
        assert_eq!(
            get("main"),
            Some(host_file(Path::new("/usr/bin/tree"), None))
        );
        assert!(matches!(
            get("init"),
            Some(Node::File {
                content: Content::Owned(_),
                ..
            })
        ));
        assert_eq!(
            get("data/bash"),
            Some(host_file(Path::new("/usr/bin/bash"), None))
        );
        // The binary under its own name, on PATH, for its argv[0].
        assert_eq!(get("data/tree"), Some(Node::Symlink("/main".into())));
        assert!(get("data/hostname").is_some());
        assert!(get("lib/libc.so.6").is_some());
        assert!(get("lib/ld-linux-x86-64.so.2").is_some());
        assert_eq!(
            get("lib/modules/0001-virtio.ko"),
            Some(host_file(Path::new("/m/virtio.ko"), Some(0o644)))
        );
        assert!(get("lib/modules/0002-virtio_ring.ko.xz").is_some());
        assert_eq!(get("virtrun.config"), Some(generated(b"cfg".to_vec())));
        for dir in [
            "dev",
            "proc",
            "sys",
            "tmp",
            "run",
            "root",
            "data",
            "lib/modules",
        ] {
            assert_eq!(get(dir), Some(Node::Dir), "{dir}");
        }
        assert_eq!(get("dev/console"), Some(Node::CharDev(5, 1)));
        assert!(get("etc/hosts").is_some());
    }

    #[test]
    fn library_dirs_become_links_to_lib() {
        let plan = plan(None);
        let link = Some(Node::Symlink("/lib".into()));
        let get = |p: &str| plan.entries.get(p).cloned();
        assert_eq!(get("lib64"), link);
        assert_eq!(get("usr/lib"), link);
        assert_eq!(get("usr"), Some(Node::Dir));
        // Below /usr/lib (a link to /lib) the path resolves to /lib/x86_64-linux-gnu.
        assert_eq!(get("lib/x86_64-linux-gnu"), link);
        assert_eq!(get("usr/lib/x86_64-linux-gnu"), None);
        assert_eq!(get("lib"), Some(Node::Dir));
    }

    #[test]
    fn standalone_init_is_the_binary() {
        let plan = plan(None);
        assert_eq!(
            plan.entries.get("init"),
            Some(&Node::Symlink("/main".into()))
        );
    }

    #[test]
    fn standalone_loader_takes_the_transport_modules() {
        let plan = Plan::new(&Input {
            init: Some(Content::Owned(b"LOADER".to_vec())),
            config: None,
            boot: None,
            loader: Some(b"ports\x002\0".to_vec()),
            main: Some(Path::new("/usr/bin/tree")),
            files: &[],
            modules: &[Module::file(Path::new("/m/veth.ko")).unwrap()],
            transport_modules: &[
                Module::file(Path::new("/m/virtio.ko")).unwrap(),
                Module::file(Path::new("/m/virtio_pci.ko")).unwrap(),
            ],
            libs: &Resolved::default(),
        })
        .unwrap();
        let get = |p: &str| plan.entries.get(p).cloned();
        assert_eq!(
            get("virtrun.loader"),
            Some(generated(b"ports\x002\0".to_vec()))
        );
        assert!(get("virtrun-modules/0001-virtio.ko").is_some());
        assert!(get("virtrun-modules/0002-virtio_pci.ko").is_some());
        // The user's modules stay where the user's init loads them.
        assert!(get("lib/modules/0001-veth.ko").is_some());
        assert_eq!(get("virtrun.config"), None);
        assert!(matches!(get("init"), Some(Node::File { .. })));
    }

    #[test]
    fn parents_come_before_children() {
        let plan = plan(Some(b""));
        let names: Vec<&str> = plan.entries().map(|(p, _)| p).collect();
        for (i, name) in names.iter().enumerate() {
            if let Some(parent) = Path::new(name)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                let pos = names.iter().position(|n| Path::new(n) == parent).unwrap();
                assert!(pos < i, "{parent:?} after {name}");
            }
        }
    }

    #[test]
    fn same_name_twice_is_a_conflict() {
        let err = Plan::new(&Input {
            init: None,
            config: None,
            boot: None,
            loader: None,
            main: Some(Path::new("/usr/bin/env")),
            files: &["/usr/bin/env".into(), "/bin/env".into()],
            modules: &[],
            transport_modules: &[],
            libs: &Resolved::default(),
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/data/env: wanted by both /usr/bin/env and /bin/env"
        );
    }

    #[test]
    fn written_archive_reads_back() {
        let dir = std::env::temp_dir().join(format!("virtrun-plan-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let main = dir.join("prog");
        std::fs::write(&main, b"#!/bin/true\n").unwrap();
        std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o750)).unwrap();
        let plan = Plan::new(&Input {
            init: Some(Content::Owned(b"INIT".to_vec())),
            config: None,
            boot: None,
            loader: None,
            main: Some(&main),
            files: &[],
            modules: &[],
            transport_modules: &[],
            libs: &Resolved::default(),
        })
        .unwrap();
        let archive = plan.write(Vec::new()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let entries = cpio::read_archive(&archive).unwrap();
        let find = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(find("main").data, b"#!/bin/true\n");
        assert_eq!(find("main").mode, cpio::mode::FILE | 0o750);
        assert_eq!(find("init").data, b"INIT");
        assert_eq!(find("init").mode, cpio::mode::FILE | 0o755);
        assert!(String::from_utf8_lossy(&find("etc/hosts").data).contains("127.0.0.1\tlocalhost"));
    }

    #[test]
    fn compressed_modules_are_unpacked_unless_the_kernel_can() {
        let dir = std::env::temp_dir().join(format!("virtrun-module-xz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.ko.xz");
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &b"\x7fELF module"[..], &mut xz).unwrap();
        std::fs::write(&path, &xz).unwrap();
        let mut kernel = Kernel {
            image: PathBuf::from("/nowhere/vmlinuz"),
            arch: None,
            release: None,
            config: Some(KernelConfig::parse("CONFIG_MODULE_COMPRESS_XZ=y\n")),
            modules: None,
            looked: Vec::new(),
        };
        let unpacked = Module::for_kernel(&kernel, &path);
        kernel.config = Some(KernelConfig::parse(
            "CONFIG_MODULE_DECOMPRESS=y\nCONFIG_MODULE_COMPRESS_XZ=y\n",
        ));
        let kept = Module::for_kernel(&kernel, &path);
        assert_eq!(
            crate::inspect::kernel::read_module(&path).unwrap(),
            b"\x7fELF module"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(unpacked.name, "m.ko");
        assert_eq!(unpacked.content, Content::Compressed(path.clone()));
        assert_eq!(kept.name, "m.ko.xz");
        assert_eq!(kept.content, Content::Host(path));
    }
}
