//! Shared-library resolution: which host files the guest's `/lib` needs.
//!
//! Follows glibc's `ld.so` search rules closely enough to find the same files
//! the host's dynamic loader would, without ever running `ldd` or the binary:
//! for each object, its `DT_RPATH` and that of the objects that loaded it (only
//! when the object has no `DT_RUNPATH`), `LD_LIBRARY_PATH`, its `DT_RUNPATH`,
//! then the system directories (`/etc/ld.so.conf` and the architecture's
//! defaults). Candidates of another machine or ELF class are skipped.

mod ldconf;
mod origin;
mod paths;
mod search;
use ldconf::*;
use paths::*;
use search::*;

use crate::inspect::elf::{self, Arch, ElfError};
use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// One shared library to put into the guest's `/lib`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lib {
    /// The name under `/lib` in the guest: the `DT_NEEDED` name (its basename
    /// if it contains a `/`), or the basename of `PT_INTERP` for the
    /// interpreter.
    pub guest_name: String,
    /// The host file found; may be a symlink, the caller reads through it.
    pub host_path: PathBuf,
}

/// Everything the guest's `/lib` needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Unique by `guest_name`, in discovery order (breadth-first, like
    /// `ld.so`; the interpreter of an object comes before its needed
    /// libraries).
    pub libs: Vec<Lib>,
    /// Every host directory a library or the interpreter was found in
    /// (lexically normalised and made absolute), each followed by its
    /// symlink-resolved form when that differs; unique, in order. These become
    /// symlinks to `/lib` in the guest so `PT_INTERP` and RUNPATHs resolve.
    /// May contain `/lib` itself, which the caller must not replace.
    pub dirs: Vec<PathBuf>,
}

/// Why resolution failed. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum LibError {
    /// A `DT_NEEDED` library was found in none of the search directories.
    #[error(
        "{}: library {name} not found (searched: {}){}",
        .object.display(),
        join_paths(.searched),
        rejected_suffix(.rejected)
    )]
    NotFound {
        /// The object that needs the library.
        object: PathBuf,
        /// The `DT_NEEDED` name.
        name: String,
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
        /// Files with the right name that were skipped, each with the reason
        /// (wrong machine or class, not an ELF file, unreadable).
        rejected: Vec<String>,
    },
    /// An interpreter or a library named by path exists but cannot be used,
    /// or does not exist.
    #[error("{}: {what} {}: {reason}", .object.display(), .path.display())]
    Unusable {
        /// The object that refers to the file.
        object: PathBuf,
        /// `"interpreter"` or `"library"`.
        what: &'static str,
        /// The path as written in the object.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// One of the given files could not be inspected.
    #[error(transparent)]
    Elf(#[from] ElfError),
}

/// Finds the shared libraries of ELF files on the host.
#[derive(Debug, Clone)]
pub struct Resolver {
    arch: Arch,
    ld_library_path: Vec<PathBuf>,
    system_dirs: Vec<PathBuf>,
    /// Where the guest's `/` is on the host, for foreign binaries: absolute
    /// interpreter, library and RPATH paths are looked up below it, and the
    /// directories reported in [`Resolved::dirs`] are the guest's paths.
    sysroot: Option<PathBuf>,
}

impl Resolver {
    /// Host defaults: `LD_LIBRARY_PATH` (from the process environment),
    /// `/etc/ld.so.conf` with its `include`s, then the default directories
    /// for `arch` (multiarch directory first, then `lib64` and `lib`).
    pub fn new(arch: Arch) -> Resolver {
        let ld_library_path = std::env::var_os("LD_LIBRARY_PATH")
            .map(|v| split_path_list(v.as_bytes()))
            .unwrap_or_default();
        let mut system_dirs = Vec::new();
        read_ld_so_conf(Path::new("/etc/ld.so.conf"), 0, &mut system_dirs);
        system_dirs.extend(default_dirs(arch));
        let mut seen = HashSet::new();
        system_dirs.retain(|d| seen.insert(d.clone()));
        Resolver {
            arch,
            ld_library_path,
            system_dirs,
            sysroot: None,
        }
    }

    /// Resolves against a foreign system's root, e.g. a cross sysroot such as
    /// `/usr/aarch64-linux-gnu`: its `etc/ld.so.conf` (if any) and default
    /// directories, below `sysroot`. The host's `LD_LIBRARY_PATH` is for host
    /// programs and does not apply.
    pub fn for_sysroot(arch: Arch, sysroot: &Path) -> Resolver {
        let mut system_dirs = Vec::new();
        read_ld_so_conf(&sysroot.join("etc/ld.so.conf"), 0, &mut system_dirs);
        system_dirs.extend(default_dirs(arch));
        let mut seen = HashSet::new();
        system_dirs.retain(|d| seen.insert(d.clone()));
        let system_dirs = system_dirs.iter().map(|d| below(sysroot, d)).collect();
        Resolver {
            arch,
            ld_library_path: Vec::new(),
            system_dirs,
            sysroot: Some(sysroot.to_path_buf()),
        }
    }

    /// The Debian cross sysroot for `arch` (`/usr/<triple>`), if installed.
    pub fn debian_cross_sysroot(arch: Arch) -> Option<PathBuf> {
        let dir = PathBuf::from(format!("/usr/{}-linux-gnu", arch.elf_name()));
        dir.is_dir().then_some(dir)
    }

    /// Fully explicit search paths, for tests and foreign sysroots.
    pub fn with_paths(
        arch: Arch,
        ld_library_path: Vec<PathBuf>,
        system_dirs: Vec<PathBuf>,
    ) -> Resolver {
        Resolver {
            arch,
            ld_library_path,
            system_dirs,
            sysroot: None,
        }
    }

    /// The host path of an absolute path of the target system.
    fn host(&self, path: &Path) -> PathBuf {
        match &self.sysroot {
            Some(root) if path.is_absolute() => below(root, path),
            _ => path.to_path_buf(),
        }
    }

    /// The architecture this resolver looks for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The `LD_LIBRARY_PATH` directories, in search order.
    pub fn ld_library_path(&self) -> &[PathBuf] {
        &self.ld_library_path
    }

    /// The system directories, searched last, in order.
    pub fn system_dirs(&self) -> &[PathBuf] {
        &self.system_dirs
    }

    /// Resolves the interpreter and all needed libraries of all given ELF
    /// files, transitively.
    ///
    /// Files that are not ELF (scripts, data) need nothing and are skipped, as
    /// are ELF files of another architecture than the resolver's (the guest's
    /// loader could not run them anyway) and static binaries. An ELF file that
    /// cannot be read or parsed is an error.
    pub fn resolve(&self, files: &[&Path]) -> Result<Resolved, LibError> {
        let mut st = State {
            sysroot: self.sysroot.clone(),
            ..State::default()
        };
        for &file in files {
            let info = match elf::inspect(file) {
                Ok(info) => info,
                Err(ElfError::NotElf { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if info.arch != Some(self.arch) || !st.processed.insert(file.to_path_buf()) {
                continue;
            }
            // ld.so takes the main program's $ORIGIN from /proc/self/exe,
            // i.e. with symlinks resolved.
            let real = fs::canonicalize(file).unwrap_or_else(|_| absolute(file));
            let node = Node {
                path: file.to_path_buf(),
                origin: parent_dir(&real),
                info: Rc::new(info),
                loader_rpath: Rc::new(Vec::new()),
            };
            st.queue.push_back(node);
            while let Some(node) = st.queue.pop_front() {
                self.process(&mut st, node)?;
            }
        }
        Ok(st.out)
    }
}

#[cfg(test)]
mod tests {
    use super::ldconf::*;
    use super::origin::*;
    use super::paths::*;
    use super::*;
    use std::io;
    use std::process::Command;
    use std::time::Instant;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("virtrun-libs-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn gcc(dir: &Path, args: &[&str]) {
        let out = Command::new("gcc")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gcc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Builds sub/libvtfoo.so (needing sub2/libvtbar.so) and a program using
    /// libvtfoo.so, with `-rpath $ORIGIN/sub` as RPATH or RUNPATH.
    fn build_origin_fixture(dir: &Path, new_dtags: bool, bar_via_exe_rpath: bool) -> PathBuf {
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::create_dir_all(dir.join("sub2")).unwrap();
        fs::write(dir.join("bar.c"), "int bar(void) { return 2; }\n").unwrap();
        fs::write(
            dir.join("foo.c"),
            "int bar(void);\nint foo(void) { return bar() + 1; }\n",
        )
        .unwrap();
        fs::write(
            dir.join("main.c"),
            "int foo(void);\nint main(void) { return foo(); }\n",
        )
        .unwrap();
        gcc(
            dir,
            &[
                "-shared",
                "-fPIC",
                "-Wl,-soname,libvtbar.so",
                "-o",
                "sub2/libvtbar.so",
                "bar.c",
            ],
        );
        gcc(
            dir,
            &[
                "-shared",
                "-fPIC",
                "-Wl,-soname,libvtfoo.so",
                "-o",
                "sub/libvtfoo.so",
                "foo.c",
                "-Lsub2",
                "-lvtbar",
            ],
        );
        let rpath = if bar_via_exe_rpath {
            "-Wl,-rpath,$ORIGIN/sub:${ORIGIN}/sub2"
        } else {
            "-Wl,-rpath,$ORIGIN/sub"
        };
        let dtags = if new_dtags {
            "-Wl,--enable-new-dtags"
        } else {
            "-Wl,--disable-new-dtags"
        };
        gcc(
            dir,
            &[
                "-o",
                "prog",
                "main.c",
                "-Lsub",
                "-lvtfoo",
                "-Wl,-rpath-link,sub2",
                rpath,
                dtags,
            ],
        );
        dir.join("prog")
    }

    fn debian_resolver() -> Resolver {
        Resolver::with_paths(Arch::Amd64, Vec::new(), default_dirs(Arch::Amd64))
    }

    fn names(r: &Resolved) -> Vec<&str> {
        r.libs.iter().map(|l| l.guest_name.as_str()).collect()
    }

    #[test]
    fn bash() {
        let resolver = Resolver::new(Arch::Amd64);
        let start = Instant::now();
        let r = resolver.resolve(&[Path::new("/usr/bin/bash")]).unwrap();
        let elapsed = start.elapsed();
        eprintln!("resolving /usr/bin/bash took {elapsed:?}: {r:#?}");
        assert!(elapsed.as_millis() < 1000);
        for name in ["libtinfo.so.6", "libc.so.6", "ld-linux-x86-64.so.2"] {
            let lib = r
                .libs
                .iter()
                .find(|l| l.guest_name == name)
                .unwrap_or_else(|| panic!("{name}: {r:?}"));
            assert!(lib.host_path.exists(), "{lib:?}");
        }
        assert_eq!(r.libs[0].guest_name, "ld-linux-x86-64.so.2");
        assert_eq!(
            r.libs[0].host_path,
            Path::new("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(r.libs.len(), 3, "{r:?}");
        assert!(r.dirs.iter().any(|d| d == Path::new("/lib64")), "{r:?}");
        assert!(
            r.dirs
                .iter()
                .any(|d| d == Path::new("/lib/x86_64-linux-gnu")
                    || d == Path::new("/usr/lib/x86_64-linux-gnu")),
            "{r:?}"
        );
        assert!(
            r.dirs
                .iter()
                .any(|d| d == Path::new("/usr/lib/x86_64-linux-gnu")),
            "{r:?}"
        );
        let unique: HashSet<_> = r.dirs.iter().collect();
        assert_eq!(unique.len(), r.dirs.len());
    }

    #[test]
    fn several_files_share_libs_and_skip_non_elf() {
        let r = debian_resolver()
            .resolve(&[
                Path::new("/usr/bin/bash"),
                Path::new("/etc/hostname"),
                Path::new("/usr/bin/bash"),
                Path::new("/usr/bin/ls"),
            ])
            .unwrap();
        let n = names(&r);
        let unique: HashSet<_> = n.iter().collect();
        assert_eq!(unique.len(), n.len(), "{n:?}");
        assert!(n.contains(&"libselinux.so.1"), "{n:?}");
        assert_eq!(n.iter().filter(|&&x| x == "libc.so.6").count(), 1);
    }

    #[test]
    fn nothing_for_non_elf() {
        let r = debian_resolver()
            .resolve(&[Path::new("/etc/hostname")])
            .unwrap();
        assert_eq!(r, Resolved::default());
        let err = elf::inspect(Path::new("/etc/hostname")).unwrap_err();
        assert_eq!(err.to_string(), "/etc/hostname: not an ELF file");
    }

    #[test]
    fn truncated_elf_is_an_error() {
        let tmp = TempDir::new("truncated");
        let mut head = Vec::new();
        io::Read::read_to_end(
            &mut io::Read::take(fs::File::open("/usr/bin/bash").unwrap(), 100),
            &mut head,
        )
        .unwrap();
        let p = tmp.0.join("bash");
        fs::write(&p, &head).unwrap();
        let err = debian_resolver().resolve(&[p.as_path()]).unwrap_err();
        assert!(
            matches!(err, LibError::Elf(ElfError::Malformed { .. })),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("truncated or malformed ELF"),
            "{err}"
        );
    }

    #[test]
    fn static_binary_needs_nothing() {
        let tmp = TempDir::new("static");
        fs::write(tmp.0.join("s.c"), "int main(void) { return 0; }\n").unwrap();
        gcc(&tmp.0, &["-static", "-o", "s", "s.c"]);
        gcc(&tmp.0, &["-static-pie", "-o", "spie", "s.c"]);
        for bin in ["s", "spie"] {
            let p = tmp.0.join(bin);
            let info = elf::inspect(&p).unwrap();
            assert_eq!(info.interpreter, None, "{bin}");
            assert!(info.needed.is_empty(), "{bin}");
            let r = debian_resolver().resolve(&[p.as_path()]).unwrap();
            assert_eq!(r, Resolved::default(), "{bin}");
        }
    }

    #[test]
    fn origin_rpath() {
        let tmp = TempDir::new("origin-rpath");
        let prog = build_origin_fixture(&tmp.0, false, false);
        let info = elf::inspect(&prog).unwrap();
        assert_eq!(info.rpath, vec!["$ORIGIN/sub".to_string()]);
        assert!(info.runpath.is_empty());
        // libvtfoo.so has no RPATH of its own: libvtbar.so is not found,
        // since sub2 is in nobody's path.
        let err = debian_resolver().resolve(&[prog.as_path()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}: library libvtbar.so not found (searched: {}, /lib/x86_64-linux-gnu,",
                tmp.0.join("sub/libvtfoo.so").display(),
                tmp.0.join("sub").display()
            )),
            "{msg}"
        );
        assert!(!msg.contains('\n'));

        // With sub2 in the executable's RPATH, glibc also uses it for
        // libvtfoo.so's needs.
        fs::remove_file(&prog).unwrap();
        let prog = build_origin_fixture(&tmp.0, false, true);
        let r = debian_resolver().resolve(&[prog.as_path()]).unwrap();
        let n = names(&r);
        assert_eq!(n[..2], ["ld-linux-x86-64.so.2", "libvtfoo.so"], "{n:?}");
        assert!(n.contains(&"libvtbar.so"), "{n:?}");
        let foo = &r.libs[1];
        assert_eq!(foo.host_path, tmp.0.join("sub/libvtfoo.so"));
        let bar = r
            .libs
            .iter()
            .find(|l| l.guest_name == "libvtbar.so")
            .unwrap();
        assert_eq!(bar.host_path, tmp.0.join("sub2/libvtbar.so"));
        let real = fs::canonicalize(&tmp.0).unwrap();
        assert!(r.dirs.contains(&real.join("sub")), "{r:?}");
        assert!(r.dirs.contains(&real.join("sub2")), "{r:?}");
    }

    #[test]
    fn origin_runpath() {
        let tmp = TempDir::new("origin-runpath");
        let prog = build_origin_fixture(&tmp.0, true, true);
        let info = elf::inspect(&prog).unwrap();
        assert!(info.rpath.is_empty());
        assert_eq!(
            info.runpath,
            vec!["$ORIGIN/sub".to_string(), "${ORIGIN}/sub2".to_string()]
        );
        // RUNPATH only applies to the executable's direct needs.
        let err = debian_resolver().resolve(&[prog.as_path()]).unwrap_err();
        assert!(
            matches!(&err, LibError::NotFound { name, .. } if name == "libvtbar.so"),
            "{err}"
        );

        // LD_LIBRARY_PATH applies to everyone; a non-ELF file and a file for
        // another machine with the right name are skipped.
        let fake = tmp.0.join("fake");
        fs::create_dir_all(&fake).unwrap();
        fs::write(fake.join("libvtfoo.so"), "not a library\n").unwrap();
        let mut bar = fs::read(tmp.0.join("sub2/libvtbar.so")).unwrap();
        bar[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        fs::write(fake.join("libvtbar.so"), &bar).unwrap();
        let resolver = Resolver::with_paths(
            Arch::Amd64,
            vec![fake.clone(), tmp.0.join("sub2")],
            default_dirs(Arch::Amd64),
        );
        let r = resolver.resolve(&[prog.as_path()]).unwrap();
        let foo = r
            .libs
            .iter()
            .find(|l| l.guest_name == "libvtfoo.so")
            .unwrap();
        assert_eq!(foo.host_path, tmp.0.join("sub/libvtfoo.so"));
        let bar = r
            .libs
            .iter()
            .find(|l| l.guest_name == "libvtbar.so")
            .unwrap();
        assert_eq!(bar.host_path, tmp.0.join("sub2/libvtbar.so"));

        // Without sub2, the rejected candidates are named in the error.
        let resolver =
            Resolver::with_paths(Arch::Amd64, vec![fake.clone()], default_dirs(Arch::Amd64));
        let msg = resolver.resolve(&[prog.as_path()]).unwrap_err().to_string();
        eprintln!("{msg}");
        assert!(msg.contains("library libvtbar.so not found"), "{msg}");
        assert!(
            msg.contains(&format!(
                "skipped: {}: wrong architecture (aarch64, 64-bit), need x86_64, 64-bit",
                fake.join("libvtbar.so").display()
            )),
            "{msg}"
        );
    }

    #[test]
    fn missing_library() {
        let tmp = TempDir::new("missing");
        let prog = build_origin_fixture(&tmp.0, false, true);
        fs::remove_file(tmp.0.join("sub/libvtfoo.so")).unwrap();
        let err = debian_resolver().resolve(&[prog.as_path()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}: library libvtfoo.so not found (searched: ",
                prog.display()
            )),
            "{msg}"
        );
        assert!(msg.ends_with(", /lib, /usr/lib)"), "{msg}");
    }

    #[test]
    fn missing_interpreter() {
        let tmp = TempDir::new("interp");
        fs::write(tmp.0.join("m.c"), "int main(void) { return 0; }\n").unwrap();
        gcc(
            &tmp.0,
            &[
                "-o",
                "m",
                "m.c",
                "-Wl,--dynamic-linker=/nonexistent/ld.so.1",
            ],
        );
        let p = tmp.0.join("m");
        let msg = debian_resolver()
            .resolve(&[p.as_path()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            format!(
                "{}: interpreter /nonexistent/ld.so.1: not found",
                p.display()
            )
        );
    }

    #[test]
    fn expands_tokens() {
        let e = |s: &str| String::from_utf8(expand_tokens(s, b"/o", "lib64", "x86_64")).unwrap();
        assert_eq!(e("$ORIGIN/../lib"), "/o/../lib");
        assert_eq!(e("${ORIGIN}/x:$LIB"), "/o/x:lib64");
        assert_eq!(
            e("/a/$PLATFORM/${LIB}/${PLATFORM}"),
            "/a/x86_64/lib64/x86_64"
        );
        assert_eq!(e("$ORIGINAL/$FOO/${BAR}/$"), "$ORIGINAL/$FOO/${BAR}/$");
    }

    #[test]
    fn helpers() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), Path::new("/a/c"));
        assert_eq!(
            split_path_list(b"/a::/b;/c:"),
            vec![
                PathBuf::from("/a"),
                PathBuf::from("/b"),
                PathBuf::from("/c")
            ]
        );
        assert!(wildcard_match(b"*.conf", b"x86_64-linux-gnu.conf"));
        assert!(wildcard_match(b"a?c*", b"abc"));
        assert!(!wildcard_match(b"*.conf", b"foo.conf~"));
        assert!(!wildcard_match(b"a*b", b"acbd"));
    }

    #[test]
    fn ld_so_conf_includes() {
        let tmp = TempDir::new("ldsoconf");
        let d = tmp.0.join("ld.so.conf.d");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            tmp.0.join("ld.so.conf"),
            "# comment\n/first\ninclude ld.so.conf.d/*.conf\n  /last/  # trailing\nhwcap 0 x\n",
        )
        .unwrap();
        fs::write(d.join("b.conf"), "/b1\n/b2\n").unwrap();
        fs::write(d.join("a.conf"), "/a\ninclude ../ld.so.conf\n").unwrap();
        fs::write(d.join("ignored.txt"), "/nope\n").unwrap();
        let mut out = Vec::new();
        read_ld_so_conf(&tmp.0.join("ld.so.conf"), 0, &mut out);
        // The include cycle is cut off by the depth limit.
        let first: Vec<_> = out.iter().take(4).map(|p| p.to_str().unwrap()).collect();
        assert_eq!(first, ["/first", "/a", "/first", "/a"]);
        assert!(out.contains(&PathBuf::from("/b2")));
        assert!(out.contains(&PathBuf::from("/last")));
        assert!(!out.contains(&PathBuf::from("/nope")));
        let r = Resolver::new(Arch::Amd64);
        assert!(
            r.system_dirs()
                .contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu"))
        );
    }
}
