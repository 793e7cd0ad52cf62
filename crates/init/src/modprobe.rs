//! Modules on demand, in the guest. The host gives the kernel's module tree
//! as a read-only disk ([`MODULES_DISK_SERIAL`], with the `modules.dep` and
//! `modules.alias` that `depmod` would make); the init mounts it at
//! `/lib/modules/<release>`, where tests that run `modprobe` or `modinfo`
//! find it too, and makes itself the kernel's module helper: when the
//! kernel asks for a module (a link type, a socket family, a crypto
//! template: `request_module`), it runs `/proc/1/exe -q -- NAME`, which is
//! this program again (the init is PID 1), and that loads the module with
//! its dependencies. A name the tree does not know fails as on any system:
//! the kernel's caller gets its usual error.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use virtrun_protocol::{MODULES_DISK_SERIAL, module_name, normalize_module_name};
use virtrun_sysinit::{Error, Result, disk, fs, kmod};

/// The helper the kernel runs: the init's own executable.
const HELPER: &str = "/proc/1/exe";

/// The running kernel's release (`uname -r`).
fn release() -> String {
    // SAFETY: utsname is plain old data; uname(2) fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    unsafe { libc::uname(&mut uts) };
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Where the kernel's module tree is mounted.
pub fn tree() -> PathBuf {
    Path::new("/lib/modules").join(release())
}

/// Device nodes that anyone may open on a host (udev's rules for them).
const OPEN_TO_ALL: [&str; 2] = ["fuse", "net/tun"];

/// Creates the device nodes of the tree's `modules.devname` in `/dev`, as
/// kmod's `static-nodes` does on a host: opening one loads its module.
/// Returns how many were made; a node that cannot be made is skipped.
pub fn static_nodes() -> usize {
    let Ok(index) = std::fs::read_to_string(tree().join("modules.devname")) else {
        return 0;
    };
    index
        .lines()
        .filter_map(parse_devname)
        .filter(|node| make_node(node))
        .count()
}

/// A node of `modules.devname`: `module NAME cMAJOR:MINOR` (or `b…`).
#[derive(Debug, PartialEq, Eq)]
struct Node<'a> {
    name: &'a str,
    block: bool,
    major: u32,
    minor: u32,
}

fn parse_devname(line: &str) -> Option<Node<'_>> {
    let mut words = line.split_whitespace();
    let (_module, name, number) = (words.next()?, words.next()?, words.next()?);
    let block = match number.as_bytes().first()? {
        b'c' => false,
        b'b' => true,
        _ => return None,
    };
    let (major, minor) = number[1..].split_once(':')?;
    // A name that leaves /dev is not a device node of ours.
    let plain = !name.starts_with('/') && !name.split('/').any(|c| c.is_empty() || c == "..");
    plain.then_some(Node {
        name,
        block,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}

fn make_node(node: &Node<'_>) -> bool {
    let path = Path::new("/dev").join(node.name);
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mode = if OPEN_TO_ALL.contains(&node.name) {
        0o666
    } else {
        0o600
    };
    let kind = if node.block {
        libc::S_IFBLK
    } else {
        libc::S_IFCHR
    };
    let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path; mknod(2) and chmod(2) touch no
    // memory of ours. chmod: the umask may have taken bits of the mode.
    unsafe {
        libc::mknod(
            c_path.as_ptr(),
            kind | mode,
            libc::makedev(node.major, node.minor),
        ) == 0
            && libc::chmod(c_path.as_ptr(), mode) == 0
    }
}

/// Mounts the module tree and becomes the kernel's module helper.
pub fn mount_tree() -> Result<()> {
    let disk = disk::find(MODULES_DISK_SERIAL, disk::DISK_WAIT)?;
    let dir = tree();
    std::fs::create_dir_all(&dir).map_err(|e| Error::new(format!("mkdir {}", dir.display()), e))?;
    fs::mount(
        &disk.to_string_lossy(),
        &dir.to_string_lossy(),
        Some("ext4"),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )?;
    std::fs::write("/proc/sys/kernel/modprobe", HELPER)
        .map_err(|e| Error::new("set /proc/sys/kernel/modprobe", e))
}

/// The module a helper run was asked for, if this process is one: not PID
/// 1 but the same program as PID 1 (so never on a host, whose PID 1 is
/// another program), run as `… [-q] [--] NAME`.
pub fn requested() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if virtrun_sysinit::is_pid1() {
        return None;
    }
    let identity = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    if identity("/proc/self/exe").is_none() || identity("/proc/self/exe") != identity(HELPER) {
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.last()?;
    let options_only = args[..args.len() - 1].iter().all(|a| a.starts_with('-'));
    (options_only && !name.starts_with('-') && args.len() >= 2).then(|| name.clone())
}

/// Loads `request` (a module name or an alias) with its dependencies;
/// exits 0 when it is loaded (or built in), 1 when not.
pub fn helper(request: &str) -> ! {
    std::process::exit(match load(request) {
        Ok(()) => 0,
        Err(_) => 1,
    })
}

fn load(request: &str) -> std::io::Result<()> {
    let dir = tree();
    let deps = read_deps(&dir)?;
    let name = normalize_module_name(request);
    let names: Vec<String> = if deps.contains_key(&name) {
        vec![name]
    } else {
        aliases(&dir, request)?
    };
    if names.is_empty() {
        return if builtin(&dir, &normalize_module_name(request)) {
            Ok(())
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        };
    }
    let mut loaded = false;
    for name in names {
        let Some((path, needs)) = deps.get(&name) else {
            continue;
        };
        // Listed as depmod lists them: the last one first.
        let all = needs.iter().rev().chain(std::iter::once(path));
        if all
            .map(|p| kmod::load(&dir.join(p)))
            .collect::<Result<Vec<()>>>()
            .is_ok()
        {
            loaded = true;
        }
    }
    if loaded {
        Ok(())
    } else {
        Err(std::io::ErrorKind::Other.into())
    }
}

/// `modules.dep`: each module's file and the files it needs.
fn read_deps(dir: &Path) -> std::io::Result<HashMap<String, (PathBuf, Vec<PathBuf>)>> {
    let text = std::fs::read_to_string(dir.join("modules.dep"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (module, needs) = line.split_once(':')?;
            let name = module_name(module)?;
            let needs = needs.split_whitespace().map(PathBuf::from).collect();
            Some((name, (PathBuf::from(module), needs)))
        })
        .collect())
}

/// The modules whose `modules.alias` patterns match `request`.
fn aliases(dir: &Path, request: &str) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("modules.alias"))?;
    let Ok(request) = CString::new(request) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some("alias"), Some(pattern), Some(module)) =
            (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Ok(pattern) = CString::new(pattern) else {
            continue;
        };
        // SAFETY: two valid NUL-terminated strings; fnmatch only reads them.
        let matches = unsafe { libc::fnmatch(pattern.as_ptr(), request.as_ptr(), 0) } == 0;
        if matches && !found.iter().any(|f| f == module) {
            found.push(module.to_string());
        }
    }
    Ok(found)
}

/// Whether `name` is built into the kernel (`modules.builtin`).
fn builtin(dir: &Path, name: &str) -> bool {
    std::fs::read_to_string(dir.join("modules.builtin")).is_ok_and(|text| {
        text.lines()
            .any(|l| module_name(l).as_deref() == Some(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devname_lines_become_nodes_inside_dev() {
        assert_eq!(
            parse_devname("tun net/tun c10:200"),
            Some(Node {
                name: "net/tun",
                block: false,
                major: 10,
                minor: 200
            })
        );
        assert_eq!(
            parse_devname("dm_mod mapper/control b253:1").map(|n| (n.block, n.major)),
            Some((true, 253))
        );
        for bad in [
            "# Device nodes to trigger on-demand module loading.",
            "x ../etc/passwd c1:1",
            "x /etc/passwd c1:1",
            "x a//b c1:1",
            "x y d1:1",
            "x y c1",
            "x y",
        ] {
            assert_eq!(parse_devname(bad), None, "{bad}");
        }
    }
}
