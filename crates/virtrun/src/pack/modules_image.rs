//! Modules on demand: the kernel's module tree as a read-only ext4 image
//! that the guest mounts at `/lib/modules/<release>`, so that a module the
//! kernel asks for (a link type, a socket family, a crypto template) is
//! loaded with its dependencies by virtrun's helper, and so that tests that
//! run `modprobe` or `modinfo` themselves find the tree.
//!
//! Debian's packages ship no `modules.dep` or `modules.alias` (`depmod`
//! makes them when a package is installed): they are built here from each
//! module's `.modinfo`, in `depmod`'s text format, and added to the image.
//! The image is made once per tree and cached, keyed by the tree's identity
//! (device, inode, modification time): a run that finds it pays nothing.
//! Made with `mke2fs -d` and `debugfs` from e2fsprogs, present on every
//! Linux distribution: a file system writer of our own would be far larger.
//! Runs in parallel wait for the one that builds it (a lock file beside
//! it); the image is written without a name and linked when complete, so a
//! run killed meanwhile leaves nothing.

use crate::inspect::kernel::{KernelError, ModuleTree, modinfo_of, read_module};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The image's format, in its cache key: images made otherwise are not
/// used. Without a journal (it is read-only) and without metadata checksums,
/// whose `crc32c` a kernel with modular crypto would have to load from the
/// very tree it is mounting.
const IMAGE_FORMAT: &str = "v2";

/// Why the image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the tree failed.
    #[error(transparent)]
    Tree(#[from] KernelError),
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, io::Error),
    /// A tool of e2fsprogs failed or is missing.
    #[error("{0}")]
    Tool(String),
}

/// The index files `modprobe` reads, in `depmod`'s text format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// `modules.dep`: `kernel/…/m.ko: dependency.ko …`, each module's
    /// dependencies (all of them, the last one to load first).
    pub dep: String,
    /// `modules.alias`: `alias PATTERN module`.
    pub alias: String,
    /// `modules.devname`: `module NAME cMAJOR:MINOR` (or `b…`), the device
    /// nodes that load a module when opened, which the guest creates at
    /// boot (as kmod's `static-nodes` does on a host).
    pub devname: String,
}

/// Builds the index of `tree` from its modules' `.modinfo`.
pub fn build_index(tree: &ModuleTree) -> Result<Index, KernelError> {
    let mut files: Vec<(String, PathBuf)> =
        tree.modules().map(|(n, p)| (n.to_string(), p)).collect();
    files.sort();
    let infos = read_modinfos(&files)?;
    let mut depends: HashMap<String, Vec<String>> = HashMap::new();
    let mut alias = String::new();
    let mut devname = String::new();
    for ((name, _), info) in files.iter().zip(infos) {
        devname.push_str(&devname_line(name, &info));
        let mut deps = Vec::new();
        for (key, value) in info {
            match key.as_str() {
                "depends" => deps.extend(
                    value
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(virtrun_protocol::normalize_module_name),
                ),
                "alias" => alias.push_str(&format!("alias {value} {name}\n")),
                _ => {}
            }
        }
        depends.insert(name.clone(), deps);
    }
    let relative: HashMap<&str, String> = files
        .iter()
        .map(|(n, p)| {
            let rel = p.strip_prefix(&tree.root).unwrap_or(p);
            (n.as_str(), rel.to_string_lossy().into_owned())
        })
        .collect();
    let mut dep = String::new();
    for (name, _) in &files {
        let mut order = Vec::new();
        load_order(name, &depends, &mut HashSet::new(), &mut order);
        order.pop(); // the module itself
        let listed: Vec<&str> = order
            .iter()
            .rev()
            .filter_map(|d| relative.get(d.as_str()).map(String::as_str))
            .collect();
        dep.push_str(&format!(
            "{}: {}\n",
            relative[name.as_str()],
            listed.join(" ")
        ));
    }
    Ok(Index {
        dep,
        alias,
        devname,
    })
}

/// The `modules.devname` line of module `name` (as depmod writes it): its
/// `devname:NAME` alias with its `char-major-M-m` or `block-major-M-m`
/// alias; none for a module without both, or whose minor is a wildcard.
fn devname_line(name: &str, info: &[(String, String)]) -> String {
    let aliases = || {
        info.iter()
            .filter(|(k, _)| k == "alias")
            .map(|(_, v)| v.as_str())
    };
    let Some(node) = aliases().find_map(|a| a.strip_prefix("devname:")) else {
        return String::new();
    };
    let number = aliases().find_map(|a| {
        let (kind, rest) = if let Some(rest) = a.strip_prefix("char-major-") {
            ('c', rest)
        } else {
            ('b', a.strip_prefix("block-major-")?)
        };
        let (major, minor) = rest.split_once('-')?;
        let major: u32 = major.parse().ok()?;
        let minor: u32 = minor.parse().ok()?;
        Some(format!("{kind}{major}:{minor}"))
    });
    match number {
        Some(number) => format!("{name} {node} {number}\n"),
        None => String::new(),
    }
}

/// The `.modinfo` of each file, read on every core: a tree has thousands
/// of modules.
fn read_modinfos(files: &[(String, PathBuf)]) -> Result<Vec<Vec<(String, String)>>, KernelError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, path)| modinfo_of(&read_module(path)?, path))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(files.len());
        for w in workers {
            all.extend(w.join().expect("a modinfo reader panicked")?);
        }
        Ok(all)
    })
}

/// `name` after everything it needs, each once (a cycle is cut where it
/// closes; built-in dependencies have no entry and are skipped).
fn load_order(
    name: &str,
    depends: &HashMap<String, Vec<String>>,
    seen: &mut HashSet<String>,
    order: &mut Vec<String>,
) {
    if !seen.insert(name.to_string()) {
        return;
    }
    let Some(deps) = depends.get(name) else {
        return;
    };
    for d in deps {
        load_order(d, depends, seen, order);
    }
    order.push(name.to_string());
}

/// The cached image of `tree` (release `release`) in `cache`, made now if
/// needed.
pub fn image(tree: &ModuleTree, release: &str, cache: &Path) -> Result<PathBuf, ImageError> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e| ImageError::Io(what, e)
    };
    let meta = std::fs::metadata(&tree.root).map_err(io(&tree.root))?;
    let key = format!(
        "modules-{IMAGE_FORMAT}-{release}-{:x}-{:x}-{:x}.{:x}",
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let path = cache.join(format!("{key}.ext4"));
    if path.is_file() {
        crate::cache::touch(&path);
        return Ok(path);
    }
    let lock_path = cache.join(format!(".{key}.lock"));
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    crate::cache::flock(&lock, libc::LOCK_EX).map_err(io(&lock_path))?;
    if !path.is_file() {
        build_image(tree, cache, &path)?;
    }
    drop(lock);
    Ok(path)
}

/// Makes the image of `tree` at `path`.
fn build_image(tree: &ModuleTree, cache: &Path, path: &Path) -> Result<(), ImageError> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e| ImageError::Io(what, e)
    };
    let mut extra: Vec<(&str, String)> = Vec::new();
    if !tree.has_dep_file() {
        let index = build_index(tree)?;
        extra.push(("modules.dep", index.dep));
        extra.push(("modules.alias", index.alias));
        extra.push(("modules.devname", index.devname));
    }
    let staging = tempfile::tempdir().map_err(io(Path::new("temporary directory")))?;
    let mut commands = String::new();
    for (name, text) in &extra {
        let file = staging.path().join(name);
        std::fs::write(&file, text).map_err(io(&file))?;
        commands.push_str(&format!("write {} {name}\n", file.display()));
    }
    let command_file = staging.path().join("commands");
    std::fs::write(&command_file, commands).map_err(io(&command_file))?;

    let image = crate::scratch::tmpfile_in(cache).map_err(io(cache))?;
    let size = tree_size(&tree.root).map_err(io(&tree.root))?;
    // Room for the metadata of a few thousand small files, and for the index.
    image
        .set_len((size + size / 4 + (64 << 20)).next_multiple_of(4096))
        .map_err(io(cache))?;
    let device = format!("/proc/{}/fd/{}", std::process::id(), image.as_raw_fd());
    let root = tree.root.to_string_lossy();
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "^has_journal,^metadata_csum",
            "-b",
            "4096",
            "-E",
            "root_owner=0:0",
            "-L",
            "virtrun-modules",
            "-d",
            &root,
            &device,
        ],
    )?;
    if !extra.is_empty() {
        run(
            "debugfs",
            &["-w", "-f", &command_file.to_string_lossy(), &device],
        )?;
    }
    image.sync_all().map_err(io(cache))?;
    crate::scratch::link(&image, path).map_err(io(path))
}

/// Runs an e2fsprogs tool; its output only shows when it fails.
fn run(tool: &str, args: &[&str]) -> Result<(), ImageError> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ImageError::Tool(format!("cannot run {tool} (e2fsprogs): {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(ImageError::Tool(format!(
            "{tool} failed ({}): {}",
            out.status,
            said.trim()
        )));
    }
    Ok(())
}

/// The bytes of every file below `dir`, each rounded up to a block.
fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())? + 4096;
        } else if kind.is_file() {
            total += entry.metadata()?.len().next_multiple_of(4096);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_order_puts_dependencies_first_and_cuts_cycles() {
        let depends: HashMap<String, Vec<String>> = [
            ("veth", vec![]),
            ("ext4", vec!["jbd2", "mbcache", "crc16"]),
            ("jbd2", vec!["crc16"]),
            ("crc16", vec![]),
            ("mbcache", vec![]),
            ("a", vec!["b"]),
            ("b", vec!["a"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        let order = |name| {
            let mut o = Vec::new();
            load_order(name, &depends, &mut HashSet::new(), &mut o);
            o
        };
        assert_eq!(order("ext4"), ["crc16", "jbd2", "mbcache", "ext4"]);
        assert_eq!(order("veth"), ["veth"]);
        assert_eq!(order("a"), ["b", "a"]);
    }

    #[test]
    fn devname_needs_a_node_name_and_a_fixed_number() {
        let info = |aliases: &[&str]| -> Vec<(String, String)> {
            aliases
                .iter()
                .map(|a| ("alias".to_string(), a.to_string()))
                .collect()
        };
        assert_eq!(
            devname_line("tun", &info(&["devname:net/tun", "char-major-10-200"])),
            "tun net/tun c10:200\n"
        );
        assert_eq!(
            devname_line(
                "dm_mod",
                &info(&["block-major-253-1", "devname:mapper/control"])
            ),
            "dm_mod mapper/control b253:1\n"
        );
        // A wildcard minor, no number, no name: nothing.
        assert_eq!(
            devname_line("loop", &info(&["devname:loop", "block-major-7-*"])),
            ""
        );
        assert_eq!(devname_line("x", &info(&["devname:x"])), "");
        assert_eq!(devname_line("y", &info(&["char-major-1-2"])), "");
    }

    #[test]
    fn index_of_the_debian_cloud_tree() {
        let image = crate::inspect::kernel::tests::debian_kernel("amd64");
        let kernel = crate::inspect::kernel::Kernel::inspect(&image, None).unwrap();
        let tree = kernel.modules.expect("the module tree beside the kernel");
        let index = build_index(&tree).unwrap();
        // veth has no dependencies; ext4-like modules list theirs, last
        // to load first.
        assert!(
            index
                .dep
                .lines()
                .any(|l| l == "kernel/drivers/net/veth.ko: "),
            "{}",
            &index.dep[..2000.min(index.dep.len())]
        );
        assert!(index.alias.contains("alias rtnl-link-veth veth\n"));
        assert!(index.alias.contains("alias net-pf-38 af_alg\n"));
        // What depmod writes to modules.devname for the cloud tree.
        for line in [
            "tun net/tun c10:200\n",
            "fuse fuse c10:229\n",
            "loop loop-control c10:237\n",
        ] {
            assert!(index.devname.contains(line), "{line}: {}", index.devname);
        }
        let line = index
            .dep
            .lines()
            .find(|l| l.starts_with("kernel/drivers/char/virtio_console.ko:"))
            .unwrap();
        let deps: Vec<&str> = line.split_once(": ").unwrap().1.split(' ').collect();
        assert_eq!(
            deps.last(),
            Some(&"kernel/drivers/virtio/virtio_ring.ko"),
            "{line}"
        );
    }
}
