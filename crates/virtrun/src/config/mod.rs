//! Command line: merging the argument sources, Go-`flag`-compatible parsing and
//! validation into a [`Config`].
//!
//! virtrun is a drop-in replacement for the Go tool of the same name, so the flag
//! syntax is that of Go's `flag` package, byte for byte:
//!
//! - `-name` and `--name` are the same; values as `-name value` or `-name=value`;
//!   booleans as `-name`, `-name=true`, `-name=false` (a boolean never takes the
//!   next word).
//! - Parsing stops at the first word that does not start with `-` (or is exactly
//!   `-`), or after `--`; that word is the binary, everything after it belongs to
//!   the binary, untouched.
//! - Flags are processed left to right and the first error wins; `-h`/`-help` asks
//!   for help as soon as it is reached.
//!
//! The argument list is the concatenation of `VIRTRUN_ARGS` (split on whitespace),
//! the lines of `./.virtrun-args` (environment variables expanded) and the command
//! line, so later sources override single-value flags and extend list flags.
//!
//! [`parse`] is pure apart from `stat`-ing the named files: everything it reads
//! from the process comes in through [`Sources`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

mod error;
mod flags;
mod goflag;
mod raw;
pub mod reference;
mod sources;
mod validate;

pub use error::ConfigError;
pub use flags::usage;
pub use sources::Sources;
use sources::*;

/// Name of the per-directory argument file.
const ARGS_FILE: &str = ".virtrun-args";
/// Environment variable holding extra arguments.
const ARGS_ENV: &str = "VIRTRUN_ARGS";

const MEMORY_DEFAULT: u32 = 256;
const MEMORY_MIN: u32 = 128;
const MEMORY_MAX: u32 = 16384;
const SMP_DEFAULT: u32 = 1;
const SMP_MIN: u32 = 1;
const SMP_MAX: u32 = 16;

/// QEMU console transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// ISA serial ports (amd64 `q35`/`pc` only).
    Isa,
    /// Virtio over PCI.
    Pci,
    /// Virtio over MMIO.
    Mmio,
}

impl Transport {
    /// The name used on the command line: `isa`, `pci` or `mmio`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Isa => "isa",
            Transport::Pci => "pci",
            Transport::Mmio => "mmio",
        }
    }

    fn from_bytes(value: &[u8]) -> Option<Self> {
        [Transport::Isa, Transport::Pci, Transport::Mmio]
            .into_iter()
            .find(|t| t.as_str().as_bytes() == value)
    }
}

/// Where a kernel comes from (`-kernel`, `-kernels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelArg {
    /// A kernel image: absolute, an existing file.
    File(PathBuf),
    /// A directory with the image in `boot/` and its modules in
    /// `lib/modules/<release>` (an extracted package or image root):
    /// absolute.
    Dir(PathBuf),
    /// An OCI image of that layout, when no file or directory has the name.
    Image(reference::Reference),
}

impl std::fmt::Display for KernelArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelArg::File(p) | KernelArg::Dir(p) => write!(f, "{}", p.display()),
            KernelArg::Image(r) => write!(f, "{r}"),
        }
    }
}

/// The guest's network (`-net`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Net {
    /// Loopback only.
    #[default]
    None,
    /// A virtio NIC on QEMU's user-mode network, configured by the init.
    User,
}

impl Net {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Net::None => "none",
            Net::User => "user",
        }
    }

    fn from_bytes(value: &[u8]) -> Option<Self> {
        [Net::None, Net::User]
            .into_iter()
            .find(|n| n.as_str().as_bytes() == value)
    }
}

/// Validated configuration of one run: the one list of what a run can be
/// asked for. Parsing fills it in (`raw.rs`); validation checks and adds the
/// paths (`validate.rs`). Its default is what no flag changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The kernel; `None` = found by the binary's architecture
    /// ([`crate::inspect::discover`]).
    pub kernel: Option<KernelArg>,
    /// `-kernels`: several kernels, the binary run under each; when
    /// given, in place of `kernel`.
    pub kernels: Vec<KernelArg>,
    /// QEMU binary; `None` = default by arch. A value containing `/` is absolute
    /// and an existing regular file; otherwise a bare command name to look up in
    /// `PATH`.
    pub qemu_bin: Option<PathBuf>,
    /// QEMU machine type; `None` = default by arch.
    pub machine: Option<String>,
    /// QEMU CPU model; `None` = default by arch, `Some("")` = omit `-cpu`.
    pub cpu: Option<String>,
    /// Never use KVM.
    pub no_kvm: bool,
    /// Boot cold: no snapshot restored or made (warm start off).
    pub no_snapshot: bool,
    /// QEMU's gdb server on this loopback port, the guest held until gdb
    /// lets it run.
    pub gdb: Option<u16>,
    /// The binary runs on a terminal, virtrun's own.
    pub tty: bool,
    /// Console transport; `None` = default by arch.
    pub transport: Option<Transport>,
    /// Guest memory in MiB, 128..=16384.
    pub memory_mb: u32,
    /// Guest CPUs, 1..=16.
    pub smp: u32,
    /// The guest's network.
    pub net: Net,
    /// The binary itself is `/init`.
    pub standalone: bool,
    /// Keep go test file flags as they are.
    pub no_go_test_flag_rewrite: bool,
    /// Keep the initramfs archive and print its path.
    pub keep_initramfs: bool,
    /// Files for the guest's `/data`: absolute, existing regular files, in order.
    pub add_files: Vec<PathBuf>,
    /// The guest's root is the host's (read-only, with an overlay), the
    /// working directory's repository writable through.
    pub host_root: bool,
    /// Host directories at the same path in the guest, writable through:
    /// absolute, existing directories, in order.
    pub shares: Vec<PathBuf>,
    /// Kernel modules to load, in order.
    pub add_modules: Vec<ModuleRef>,
    /// The kernel's module tree, when not found next to the kernel.
    pub modules_dir: Option<PathBuf>,
    /// Root of the target system for shared libraries of foreign binaries.
    pub sysroot: Option<PathBuf>,
    /// `-env` values: `KEY=VALUE`, or `KEY` to pass the host's value.
    pub env: Vec<OsString>,
    /// Stop the guest after this long.
    pub timeout: Option<Duration>,
    /// Verbose guest kernel output.
    pub verbose: bool,
    /// Host-side debug log.
    pub debug: bool,
    /// The binary to run: absolute, an existing regular file.
    pub binary: PathBuf,
    /// Everything after the binary, untouched.
    pub args: Vec<OsString>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kernel: None,
            kernels: Vec::new(),
            qemu_bin: None,
            machine: None,
            cpu: None,
            no_kvm: false,
            no_snapshot: false,
            gdb: None,
            tty: false,
            transport: None,
            memory_mb: MEMORY_DEFAULT,
            smp: SMP_DEFAULT,
            net: Net::None,
            standalone: false,
            no_go_test_flag_rewrite: false,
            keep_initramfs: false,
            add_files: Vec::new(),
            host_root: false,
            shares: Vec::new(),
            add_modules: Vec::new(),
            modules_dir: None,
            sysroot: None,
            env: Vec::new(),
            timeout: None,
            verbose: false,
            debug: false,
            binary: PathBuf::new(),
            args: Vec::new(),
        }
    }
}

/// A module given with `-addModule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleRef {
    /// A module file: absolute, an existing regular file.
    Path(PathBuf),
    /// A module name, resolved with its dependencies from the kernel's
    /// module tree.
    Name(String),
}

/// What the command line asks for.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per process; boxing would only obscure the interface"
)]
pub enum Parsed {
    /// Run a binary.
    Run(Config),
    /// `-h`/`-help`: print [`usage`] and exit 0.
    Help,
    /// `-version`: print the version and exit 0.
    Version,
}

/// Parses and validates the merged arguments of `src`.
pub fn parse(src: &Sources) -> Result<Parsed, ConfigError> {
    let words = merged_words(src);
    let Some((raw, rest)) = raw::parse_flags(&words)? else {
        return Ok(Parsed::Help);
    };
    if raw.version {
        return Ok(Parsed::Version);
    }
    validate::validate(raw, rest, &src.cwd).map(Parsed::Run)
}

/// What virtrun run inside a virtrun guest does: the binary, directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    /// The binary: absolute, an existing regular file.
    pub binary: PathBuf,
    /// Everything after the binary, untouched.
    pub args: Vec<OsString>,
    /// `-debug`: say that the binary runs directly.
    pub debug: bool,
}

/// As [`parse`], for a virtrun inside a virtrun guest: the flags are
/// parsed as ever (an unknown one is still an error) but those that
/// concern only a guest (kernel, QEMU, memory, files to add, …) are not
/// checked, as they will not be used. `None` for `-h` and `-version`, which
/// [`parse`] answers.
pub fn parse_direct(src: &Sources) -> Result<Option<Direct>, ConfigError> {
    let words = merged_words(src);
    let Some((raw, rest)) = raw::parse_flags(&words)? else {
        return Ok(None);
    };
    if raw.version {
        return Ok(None);
    }
    let (binary, args) = rest.split_first().ok_or(ConfigError::NoBinary)?;
    Ok(Some(Direct {
        binary: validate::regular_file("binary", binary, &src.cwd)?,
        args: args.to_vec(),
        debug: raw.config.debug,
    }))
}

/// Bytes as text for messages.
fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::flags::{FLAGS, Flag};
    use super::goflag::*;
    use super::raw::Raw;
    use super::validate::absolute;
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::ffi::OsStringExt;
    use std::path::Path;

    const KERNEL: &str = "/etc/hostname";
    const BINARY: &str = "/usr/bin/env";
    const OTHER: &str = "/etc/passwd";

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn src(cmdline: &[&str]) -> Sources<'static> {
        Sources {
            cmdline: os(cmdline),
            env_args: None,
            args_file: None,
            cwd: PathBuf::from("/"),
            getenv: &no_env,
        }
    }

    fn run(s: &Sources) -> Config {
        match parse(s) {
            Ok(Parsed::Run(config)) => config,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn kernels_are_files_directories_or_image_references() {
        let c = run_args(&[
            "-kernels",
            "/usr,ghcr.io/cilium/ci-kernels:6.6",
            "-kernels",
            KERNEL,
            BINARY,
        ]);
        assert_eq!(
            c.kernels,
            [
                KernelArg::Dir(PathBuf::from("/usr")),
                KernelArg::Image(
                    reference::Reference::parse("ghcr.io/cilium/ci-kernels:6.6").unwrap()
                ),
                KernelArg::File(PathBuf::from(KERNEL)),
            ]
        );
        // A path that names nothing stays a path, and fails as one.
        assert_eq!(
            err_msg(&["-kernel", "kernels/vmlinuz", BINARY]),
            "-kernel: /kernels/vmlinuz: no such file"
        );
        assert_eq!(
            err_msg(&["-kernels", "/nonexistent/k", BINARY]),
            "-kernels: /nonexistent/k: no such file"
        );
        let empty = run_args(&["-kernels", "/usr", "-kernels=", BINARY]);
        assert!(empty.kernels.is_empty());
    }

    #[test]
    fn net_is_none_or_user() {
        assert_eq!(run_args(&["-kernel", KERNEL, BINARY]).net, Net::None);
        let user = run_args(&["-kernel", KERNEL, "-net", "user", BINARY]);
        assert_eq!(user.net, Net::User);
        let none = run_args(&["-kernel", KERNEL, "-net=user", "-net", "none", BINARY]);
        assert_eq!(none.net, Net::None);
        let e = err(&src(&["-net", "tap", BINARY]));
        assert_eq!(
            e.to_string(),
            "invalid value \"tap\" for flag -net: unknown network (want none or user)"
        );
        assert!(!e.wants_usage());
    }

    #[test]
    fn directly_the_guest_flags_go_unchecked() {
        let direct = parse_direct(&src(&[
            "-kernel",
            "/no/such/kernel",
            "-addFile=/no/such/file",
            "-debug",
            BINARY,
            "-kernel",
            "x",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(direct.binary, PathBuf::from(BINARY));
        assert_eq!(direct.args, os(&["-kernel", "x"]));
        assert!(direct.debug);
        assert!(parse_direct(&src(&["-version", BINARY])).unwrap().is_none());
        assert!(parse_direct(&src(&["-h"])).unwrap().is_none());
        let unknown = parse_direct(&src(&["-nosuchflag", BINARY])).unwrap_err();
        assert!(unknown.to_string().contains("nosuchflag"), "{unknown}");
        let missing = parse_direct(&src(&["/no/such/binary"])).unwrap_err();
        assert_eq!(missing.to_string(), "binary: /no/such/binary: no such file");
    }

    fn err(s: &Sources) -> ConfigError {
        match parse(s) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn run_args(cmdline: &[&str]) -> Config {
        run(&src(cmdline))
    }

    fn err_msg(cmdline: &[&str]) -> String {
        err(&src(cmdline)).to_string()
    }

    #[test]
    fn minimal_run_has_defaults() {
        let c = run_args(&["-kernel", KERNEL, BINARY]);
        assert_eq!(
            c,
            Config {
                kernel: Some(KernelArg::File(PathBuf::from(KERNEL))),
                kernels: vec![],
                qemu_bin: None,
                machine: None,
                cpu: None,
                no_kvm: false,
                no_snapshot: false,
                gdb: None,
                tty: false,
                transport: None,
                memory_mb: 256,
                smp: 1,
                net: Net::None,
                standalone: false,
                no_go_test_flag_rewrite: false,
                keep_initramfs: false,
                add_files: vec![],
                host_root: false,
                shares: vec![],
                add_modules: vec![],
                modules_dir: None,
                sysroot: None,
                env: vec![],
                timeout: None,
                verbose: false,
                debug: false,
                binary: PathBuf::from(BINARY),
                args: vec![],
            }
        );
    }

    #[test]
    fn every_flag_sets_its_field() {
        let c = run_args(&[
            "-kernel",
            KERNEL,
            "-qemuBin",
            "qemu-system-x86_64",
            "-machine",
            "pc",
            "-cpu",
            "host",
            "-nokvm",
            "-transport",
            "isa",
            "-memory",
            "1024",
            "-smp",
            "4",
            "-standalone",
            "-noGoTestFlagRewrite",
            "-keepInitramfs",
            "-addFile",
            OTHER,
            "-addModule",
            KERNEL,
            "-verbose",
            "-debug",
            BINARY,
            "a",
        ]);
        assert_eq!(c.qemu_bin, Some(PathBuf::from("qemu-system-x86_64")));
        assert_eq!(c.machine.as_deref(), Some("pc"));
        assert_eq!(c.cpu.as_deref(), Some("host"));
        assert!(c.no_kvm && c.standalone && c.no_go_test_flag_rewrite);
        assert!(c.keep_initramfs && c.verbose && c.debug);
        assert_eq!(c.transport, Some(Transport::Isa));
        assert_eq!((c.memory_mb, c.smp), (1024, 4));
        assert_eq!(c.add_files, vec![PathBuf::from(OTHER)]);
        assert_eq!(c.add_modules, vec![ModuleRef::Path(PathBuf::from(KERNEL))]);
        assert_eq!(c.args, os(&["a"]));
    }

    #[test]
    fn value_forms_are_equivalent() {
        for words in [
            &["-memory", "512"][..],
            &["--memory", "512"],
            &["-memory=512"],
            &["--memory=512"],
        ] {
            let mut cmdline = vec!["-kernel", KERNEL];
            cmdline.extend_from_slice(words);
            cmdline.push(BINARY);
            assert_eq!(run_args(&cmdline).memory_mb, 512, "{words:?}");
        }
        assert_eq!(
            run_args(&["--kernel=/etc/hostname", BINARY]).kernel,
            Some(KernelArg::File(PathBuf::from(KERNEL)))
        );
    }

    #[test]
    fn value_keeps_everything_after_the_first_equals_sign() {
        let c = run_args(&["-kernel", KERNEL, "-cpu=max,pmu=off", BINARY]);
        assert_eq!(c.cpu.as_deref(), Some("max,pmu=off"));
        let c = run_args(&["-kernel", KERNEL, "-machine=q35=x", BINARY]);
        assert_eq!(c.machine.as_deref(), Some("q35=x"));
    }

    #[test]
    fn value_flag_takes_next_word_even_if_it_looks_like_a_flag() {
        let c = run_args(&["-kernel", KERNEL, "-cpu", "-debug", BINARY]);
        assert_eq!(c.cpu.as_deref(), Some("-debug"));
        assert!(!c.debug);
    }

    #[test]
    fn bool_forms() {
        let base = |flag: &str| run_args(&["-kernel", KERNEL, flag, BINARY]).no_kvm;
        for on in [
            "-nokvm",
            "--nokvm",
            "-nokvm=1",
            "-nokvm=t",
            "-nokvm=T",
            "-nokvm=true",
            "-nokvm=TRUE",
            "-nokvm=True",
        ] {
            assert!(base(on), "{on}");
        }
        for off in [
            "-nokvm=0",
            "-nokvm=f",
            "-nokvm=F",
            "-nokvm=false",
            "-nokvm=FALSE",
            "-nokvm=False",
            "--nokvm=false",
        ] {
            assert!(!base(off), "{off}");
        }
    }

    #[test]
    fn bool_never_eats_the_next_word() {
        let c = run_args(&["-kernel", KERNEL, "-nokvm", BINARY, "false"]);
        assert!(c.no_kvm);
        assert_eq!(c.binary, PathBuf::from(BINARY));
        assert_eq!(c.args, os(&["false"]));
        // `-nokvm false`: "false" is the binary.
        let e = err_msg(&["-kernel", KERNEL, "-nokvm", "false"]);
        assert_eq!(e, "binary: /false: no such file");
    }

    #[test]
    fn later_bool_wins() {
        let c = run_args(&["-kernel", KERNEL, "-debug", "-debug=false", BINARY]);
        assert!(!c.debug);
    }

    #[test]
    fn invalid_bool() {
        let e = err(&src(&["-kernel", KERNEL, "-nokvm=yes", BINARY]));
        assert_eq!(
            e.to_string(),
            "invalid boolean value \"yes\" for -nokvm: parse error"
        );
        assert!(e.wants_usage());
        let e = err_msg(&["-kernel", KERNEL, "-nokvm=", BINARY]);
        assert_eq!(e, "invalid boolean value \"\" for -nokvm: parse error");
    }

    #[test]
    fn double_dash_ends_flags() {
        let c = run_args(&["-kernel", KERNEL, "--", BINARY, "-debug"]);
        assert_eq!(c.binary, PathBuf::from(BINARY));
        assert_eq!(c.args, os(&["-debug"]));
        assert!(!c.debug);
        // After `--`, even a flag-looking word is the binary.
        let e = err_msg(&["-kernel", KERNEL, "--", "-debug"]);
        assert_eq!(e, "binary: /-debug: no such file");
        // Only the first `--` is consumed.
        let c = run(&Sources {
            cwd: PathBuf::from("/usr/bin"),
            ..src(&["-kernel", KERNEL, "--", "env", "--", "x"])
        });
        assert_eq!(c.args, os(&["--", "x"]));
    }

    #[test]
    fn single_dash_is_the_binary() {
        let e = err(&src(&["-kernel", KERNEL, "-", "-debug"]));
        assert_eq!(e.to_string(), "binary: /-: no such file");
        assert!(!e.wants_usage());
    }

    #[test]
    fn empty_word_is_the_binary() {
        let e = err_msg(&["-kernel", KERNEL, "", "x"]);
        assert_eq!(e, "binary: /: not a regular file");
    }

    #[test]
    fn args_after_binary_are_verbatim() {
        let c = run_args(&[
            "-kernel", KERNEL, BINARY, "-kernel", "y", "--", "-", "a b", "-h", "--debug",
        ]);
        assert_eq!(c.kernel, Some(KernelArg::File(PathBuf::from(KERNEL))));
        assert_eq!(
            c.args,
            os(&["-kernel", "y", "--", "-", "a b", "-h", "--debug"])
        );
        assert!(!c.debug);
    }

    #[test]
    fn non_utf8_args_pass_through() {
        let odd = OsString::from_vec(vec![0xff, b' ', 0xfe]);
        let mut s = src(&["-kernel", KERNEL, BINARY]);
        s.cmdline.push(odd.clone());
        assert_eq!(run(&s).args, vec![odd]);
    }

    #[test]
    fn bad_flag_syntax() {
        for word in ["---x", "-=x", "--=x", "---"] {
            let e = err(&src(&["-kernel", KERNEL, word, BINARY]));
            assert_eq!(e.to_string(), format!("bad flag syntax: {word}"));
            assert!(e.wants_usage());
        }
    }

    #[test]
    fn unknown_flag() {
        let e = err(&src(&["-kernel", KERNEL, "-foo", BINARY]));
        assert_eq!(e.to_string(), "flag provided but not defined: -foo");
        assert!(e.wants_usage());
        assert_eq!(
            err_msg(&["--foo=bar", BINARY]),
            "flag provided but not defined: -foo"
        );
        // Names are case-sensitive.
        assert_eq!(
            err_msg(&["-Kernel", KERNEL, BINARY]),
            "flag provided but not defined: -Kernel"
        );
        assert_eq!(
            err_msg(&["-qemu-bin", "x", BINARY]),
            "flag provided but not defined: -qemu-bin"
        );
    }

    #[test]
    fn missing_argument() {
        let e = err(&src(&["-kernel"]));
        assert_eq!(e.to_string(), "flag needs an argument: -kernel");
        assert!(e.wants_usage());
        assert_eq!(
            err_msg(&["-kernel", KERNEL, "--memory"]),
            "flag needs an argument: -memory"
        );
    }

    #[test]
    fn help() {
        for word in ["-h", "-help", "--help", "--h", "-help=false", "-h=1"] {
            assert!(matches!(parse(&src(&[word])), Ok(Parsed::Help)), "{word}");
        }
        // Reached before any other problem: no kernel, no binary, unknown later.
        assert!(matches!(
            parse(&src(&["-debug", "-h", "-foo", "-memory", "1"])),
            Ok(Parsed::Help)
        ));
        // An earlier error wins.
        assert!(matches!(
            parse(&src(&["-foo", "-h"])),
            Err(ConfigError::UnknownFlag(_))
        ));
        assert!(matches!(
            parse(&src(&["-memory", "64", "-h"])),
            Err(ConfigError::OutOfRange { .. })
        ));
        // After the binary, -h belongs to the binary.
        assert_eq!(
            run_args(&["-kernel", KERNEL, BINARY, "-h"]).args,
            os(&["-h"])
        );
    }

    #[test]
    fn version() {
        assert!(matches!(parse(&src(&["-version"])), Ok(Parsed::Version)));
        assert!(matches!(
            parse(&src(&["--version", "/nonexistent", "x"])),
            Ok(Parsed::Version)
        ));
        assert!(matches!(
            parse(&src(&["-kernel", "/nonexistent", "-version=true"])),
            Ok(Parsed::Version)
        ));
        // All flags must parse first.
        assert!(matches!(
            parse(&src(&["-version", "-smp", "99"])),
            Err(ConfigError::OutOfRange { .. })
        ));
        // Turned off again by a later source.
        let mut s = src(&["-version=false", "-kernel", KERNEL, BINARY]);
        s.env_args = Some("-version".into());
        assert!(matches!(parse(&s), Ok(Parsed::Run(_))));
    }

    #[test]
    fn kernel_is_optional() {
        assert_eq!(run_args(&[BINARY]).kernel, None);
        assert_eq!(
            run_args(&["-kernel", KERNEL, BINARY]).kernel,
            Some(KernelArg::File(PathBuf::from(KERNEL)))
        );
        // An empty value unsets it.
        let mut s = src(&["-kernel=", BINARY]);
        s.env_args = Some(format!("-kernel {KERNEL}").into());
        assert!(matches!(parse(&s), Ok(Parsed::Run(c)) if c.kernel.is_none()));
    }

    #[test]
    fn binary_is_required() {
        let e = err(&src(&["-kernel", KERNEL]));
        assert_eq!(e.to_string(), "no binary given");
        assert!(e.wants_usage());
        assert!(matches!(
            parse(&src(&["-kernel", KERNEL, "--"])),
            Err(ConfigError::NoBinary)
        ));
        assert!(matches!(parse(&src(&[])), Err(ConfigError::NoBinary)));
    }

    #[test]
    fn memory_and_smp_ranges() {
        let memory = |v: &str| parse(&src(&["-kernel", KERNEL, "-memory", v, BINARY]));
        let smp = |v: &str| parse(&src(&["-kernel", KERNEL, "-smp", v, BINARY]));
        for (v, want) in [
            ("128", 128),
            ("16384", 16384),
            ("0x100", 256),
            ("+512", 512),
        ] {
            match memory(v) {
                Ok(Parsed::Run(c)) => assert_eq!(c.memory_mb, want, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        for (v, want) in [("1", 1), ("16", 16), ("0b11", 3), ("010", 8), ("0o17", 15)] {
            match smp(v) {
                Ok(Parsed::Run(c)) => assert_eq!(c.smp, want, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        let e = memory("64").unwrap_err();
        assert_eq!(
            e.to_string(),
            "-memory must be between 128 and 16384, got 64"
        );
        assert!(e.wants_usage());
        assert_eq!(
            memory("16385").unwrap_err().to_string(),
            "-memory must be between 128 and 16384, got 16385"
        );
        assert_eq!(
            memory("-1").unwrap_err().to_string(),
            "-memory must be between 128 and 16384, got -1"
        );
        assert_eq!(
            smp("0").unwrap_err().to_string(),
            "-smp must be between 1 and 16, got 0"
        );
        assert_eq!(
            smp("17").unwrap_err().to_string(),
            "-smp must be between 1 and 16, got 17"
        );
        assert_eq!(
            smp("99999999999").unwrap_err().to_string(),
            "-smp must be between 1 and 16, got 99999999999"
        );
    }

    #[test]
    fn bad_numbers() {
        let memory = |v: &str| err_msg(&["-kernel", KERNEL, "-memory", v, BINARY]);
        assert_eq!(
            memory("x"),
            "invalid value \"x\" for flag -memory: parse error"
        );
        assert_eq!(
            memory(""),
            "invalid value \"\" for flag -memory: parse error"
        );
        assert_eq!(
            memory("256MB"),
            "invalid value \"256MB\" for flag -memory: parse error"
        );
        assert_eq!(
            memory("99999999999999999999"),
            "invalid value \"99999999999999999999\" for flag -memory: value out of range"
        );
        let e = err(&src(&["-kernel", KERNEL, "-smp=1.5", BINARY]));
        assert!(e.wants_usage());
        assert!(matches!(e, ConfigError::InvalidValue { flag: "smp", .. }));
    }

    #[test]
    fn go_integer_syntax() {
        use IntError::{Range, Syntax};
        let cases: &[(&str, Result<i64, IntError>)] = &[
            ("0", Ok(0)),
            ("-0", Ok(0)),
            ("+7", Ok(7)),
            ("42", Ok(42)),
            ("0x1F", Ok(31)),
            ("0X1f", Ok(31)),
            ("0b101", Ok(5)),
            ("0B1", Ok(1)),
            ("0o17", Ok(15)),
            ("017", Ok(15)),
            ("0_17", Ok(15)),
            ("1_000", Ok(1000)),
            ("0x_ff", Ok(255)),
            ("0b1_0", Ok(2)),
            ("-0x10", Ok(-16)),
            ("9223372036854775807", Ok(i64::MAX)),
            ("-9223372036854775808", Ok(i64::MIN)),
            ("9223372036854775808", Err(Range)),
            ("-9223372036854775809", Err(Range)),
            ("18446744073709551616", Err(Range)),
            ("", Err(Syntax)),
            ("+", Err(Syntax)),
            ("-", Err(Syntax)),
            ("--1", Err(Syntax)),
            ("0x", Err(Syntax)),
            ("08", Err(Syntax)),
            ("0b2", Err(Syntax)),
            ("1__0", Err(Syntax)),
            ("_1", Err(Syntax)),
            ("1_", Err(Syntax)),
            ("0x1_", Err(Syntax)),
            (" 1", Err(Syntax)),
            ("1e3", Err(Syntax)),
            ("١", Err(Syntax)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_int(s), *want, "{s:?}");
        }
    }

    #[test]
    fn transport_values() {
        for (v, want) in [
            ("isa", Transport::Isa),
            ("pci", Transport::Pci),
            ("mmio", Transport::Mmio),
        ] {
            let c = run_args(&["-kernel", KERNEL, "-transport", v, BINARY]);
            assert_eq!(c.transport, Some(want));
            assert_eq!(want.as_str(), v);
        }
        for v in ["PCI", "", "1", "virtio"] {
            let e = err(&src(&["-kernel", KERNEL, "-transport", v, BINARY]));
            assert!(
                matches!(
                    e,
                    ConfigError::InvalidValue {
                        flag: "transport",
                        ..
                    }
                ),
                "{v}: {e}"
            );
            assert!(e.wants_usage());
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid value {v:?} for flag -transport: "))
            );
        }
    }

    #[test]
    fn cpu_machine_qemu_bin_empty_values() {
        let c = run_args(&[
            "-kernel",
            KERNEL,
            "-cpu",
            "",
            "-machine=",
            "-qemuBin=",
            BINARY,
        ]);
        assert_eq!(c.cpu.as_deref(), Some(""));
        assert_eq!(c.machine, None);
        assert_eq!(c.qemu_bin, None);
    }

    #[test]
    fn qemu_bin_path_or_command() {
        let c = run_args(&["-kernel", KERNEL, "-qemuBin", "qemu-kvm", BINARY]);
        assert_eq!(c.qemu_bin, Some(PathBuf::from("qemu-kvm")));
        let c = run(&Sources {
            cwd: PathBuf::from("/usr/lib"),
            ..src(&["-kernel", KERNEL, "-qemuBin", "../bin/env", BINARY])
        });
        assert_eq!(c.qemu_bin, Some(PathBuf::from("/usr/bin/env")));
        assert_eq!(
            err_msg(&["-kernel", KERNEL, "-qemuBin", "/nonexistent/qemu", BINARY]),
            "-qemuBin: /nonexistent/qemu: no such file"
        );
        assert_eq!(
            err_msg(&["-kernel", KERNEL, "-qemuBin", "./usr", BINARY]),
            "-qemuBin: /usr: not a regular file"
        );
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let c = run(&Sources {
            cwd: PathBuf::from("/usr"),
            ..src(&[
                "-kernel",
                "../etc/hostname",
                "-addFile",
                "./bin/env,bin/../bin/env",
                "-addModule",
                "/etc/./passwd",
                "bin/env",
            ])
        });
        assert_eq!(c.kernel, Some(KernelArg::File(PathBuf::from(KERNEL))));
        assert_eq!(c.binary, PathBuf::from(BINARY));
        assert_eq!(
            c.add_files,
            vec![PathBuf::from(BINARY), PathBuf::from(BINARY)]
        );
        assert_eq!(c.add_modules, vec![ModuleRef::Path(PathBuf::from(OTHER))]);
    }

    #[test]
    fn absolute_is_lexical() {
        let cwd = Path::new("/a/b");
        for (p, want) in [
            ("x", "/a/b/x"),
            ("./x/", "/a/b/x"),
            ("../x", "/a/x"),
            ("../../../x", "/x"),
            ("/c//d/./e/../f", "/c/d/f"),
            ("", "/a/b"),
            ("/", "/"),
        ] {
            assert_eq!(absolute(cwd, Path::new(p)), PathBuf::from(want), "{p:?}");
        }
    }

    #[test]
    fn symlinks_are_not_resolved() {
        let dir = TempDir::new("symlink");
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(BINARY, &link).unwrap();
        let c = run(&Sources {
            cwd: dir.0.clone(),
            ..src(&["-kernel", KERNEL, "link"])
        });
        assert_eq!(c.binary, link);
        // A dangling symlink is a missing file.
        let dangling = dir.0.join("dangling");
        std::os::unix::fs::symlink("/nonexistent", &dangling).unwrap();
        let e = err(&Sources {
            cwd: dir.0.clone(),
            ..src(&["-kernel", KERNEL, "-addFile", "dangling", BINARY])
        });
        assert!(matches!(
            e,
            ConfigError::Missing {
                what: "-addFile",
                ..
            }
        ));
    }

    #[test]
    fn missing_files_are_named() {
        let e = err(&src(&["-kernel", "/nonexistent", BINARY]));
        assert_eq!(e.to_string(), "-kernel: /nonexistent: no such file");
        assert!(!e.wants_usage());
        assert_eq!(
            err_msg(&["-kernel", KERNEL, "-addFile", "/nonexistent", BINARY]),
            "-addFile: /nonexistent: no such file"
        );
        assert_eq!(
            err_msg(&["-kernel", KERNEL, "-addModule", "/nonexistent", BINARY]),
            "-addModule: /nonexistent: no such file"
        );
        let e = err(&Sources {
            cwd: PathBuf::from("/x"),
            ..src(&["-kernel", KERNEL, "y"])
        });
        assert_eq!(e.to_string(), "binary: /x/y: no such file");
        // A path through a regular file.
        assert_eq!(
            err_msg(&["-kernel", "/etc/hostname/x", BINARY])
                .split(": ")
                .take(2)
                .collect::<Vec<_>>(),
            ["-kernel", "/etc/hostname/x"]
        );
    }

    #[test]
    fn directories_are_rejected_but_for_kernels() {
        assert_eq!(
            run_args(&["-kernel", "/usr", BINARY]).kernel,
            Some(KernelArg::Dir(PathBuf::from("/usr")))
        );
        let e = err(&src(&["-kernel", KERNEL, "-addFile", "/usr/bin", BINARY]));
        assert!(!e.wants_usage());
        assert_eq!(
            err_msg(&["-kernel", KERNEL, "-addFile", "/usr/bin", BINARY]),
            "-addFile: /usr/bin: not a regular file"
        );
        assert_eq!(
            err_msg(&["-kernel", KERNEL, "/usr/bin"]),
            "binary: /usr/bin: not a regular file"
        );
    }

    #[test]
    fn check_order_is_kernel_files_modules_binary() {
        let e = err_msg(&[
            "-kernel",
            "/nonexistent/k",
            "-addFile",
            "/nonexistent/f",
            "/nonexistent/b",
        ]);
        assert_eq!(e, "-kernel: /nonexistent/k: no such file");
        let e = err_msg(&[
            "-kernel",
            KERNEL,
            "-addModule",
            "/nonexistent/m",
            "-addFile",
            "/nonexistent/f",
            "/nonexistent/b",
        ]);
        assert_eq!(e, "-addFile: /nonexistent/f: no such file");
    }

    #[test]
    fn list_flags_accumulate_split_and_clear() {
        let c = run_args(&[
            "-kernel",
            KERNEL,
            "-addFile",
            OTHER,
            "-addFile",
            &format!(",{BINARY},,{KERNEL},"),
            "-addModule",
            OTHER,
            "-addModule=",
            "-addModule",
            BINARY,
            BINARY,
        ]);
        assert_eq!(
            c.add_files,
            vec![
                PathBuf::from(OTHER),
                PathBuf::from(BINARY),
                PathBuf::from(KERNEL)
            ]
        );
        assert_eq!(c.add_modules, vec![ModuleRef::Path(PathBuf::from(BINARY))]);
        let c = run_args(&["-kernel", KERNEL, "-addFile", OTHER, "-addFile=", BINARY]);
        assert!(c.add_files.is_empty());
        let c = run_args(&["-kernel", KERNEL, "-addFile", ",", BINARY]);
        assert!(c.add_files.is_empty());
    }

    #[test]
    fn precedence_single_values() {
        let s = Sources {
            cmdline: os(&["-memory", "1024", BINARY]),
            env_args: Some(
                format!("-kernel {KERNEL} -memory 512 -smp 2 -machine env -cpu env").into(),
            ),
            args_file: Some(b"-smp\n3\n-machine=file\n".to_vec()),
            ..src(&[])
        };
        let c = run(&s);
        // cmdline over file over env; untouched values from wherever they were set.
        assert_eq!(c.memory_mb, 1024);
        assert_eq!(c.smp, 3);
        assert_eq!(c.machine.as_deref(), Some("file"));
        assert_eq!(c.cpu.as_deref(), Some("env"));
        assert_eq!(c.kernel, Some(KernelArg::File(PathBuf::from(KERNEL))));
    }

    #[test]
    fn precedence_lists_accumulate_in_order() {
        let s = Sources {
            cmdline: os(&["-addFile", OTHER, BINARY]),
            env_args: Some(format!("-kernel {KERNEL} -addFile {KERNEL}").into()),
            args_file: Some(format!("-addFile\n{BINARY}\n").into_bytes()),
            ..src(&[])
        };
        assert_eq!(
            run(&s).add_files,
            vec![
                PathBuf::from(KERNEL),
                PathBuf::from(BINARY),
                PathBuf::from(OTHER)
            ]
        );
    }

    #[test]
    fn binary_may_come_from_a_file_or_env() {
        // The sources are one list: a binary in VIRTRUN_ARGS ends the flags, so the
        // command line becomes its arguments (as in the original).
        let s = Sources {
            cmdline: os(&["-debug"]),
            env_args: Some(format!("-kernel {KERNEL} {BINARY}").into()),
            ..src(&[])
        };
        let c = run(&s);
        assert!(!c.debug);
        assert_eq!(c.args, os(&["-debug"]));
    }

    #[test]
    fn env_args_split_on_whitespace() {
        let s = Sources {
            env_args: Some(format!(" \t-kernel\n{KERNEL}\u{a0}-nokvm\r\n  ").into()),
            ..src(&[BINARY])
        };
        let c = run(&s);
        assert!(c.no_kvm);
        assert_eq!(
            fields(b"  a b\t\tc\xff d\xc2\xa0e\xe3\x80\x80 "),
            [&b"a"[..], b"b", b"c\xff", b"d", b"e"]
        );
        assert!(fields(b"").is_empty());
        assert!(fields(b" \n ").is_empty());
        assert_eq!(fields(b"x"), [b"x"]);
    }

    #[test]
    fn args_file_lines_trimmed_and_empty_skipped() {
        let s = Sources {
            args_file: Some(
                format!("\n   -kernel  \n\t{KERNEL}\r\n\n  \n-cpu\nmax pmu=off\n-debug\n")
                    .into_bytes(),
            ),
            ..src(&[BINARY])
        };
        let c = run(&s);
        assert_eq!(c.kernel, Some(KernelArg::File(PathBuf::from(KERNEL))));
        // One argument per line: inner spaces stay.
        assert_eq!(c.cpu.as_deref(), Some("max pmu=off"));
        assert!(c.debug);
    }

    #[test]
    fn args_file_expands_variables() {
        let env: HashMap<&str, &str> = [
            ("KDIR", "/etc"),
            ("NAME", "hostname"),
            ("CPU", "  host  "),
            ("TWO", "-debug\n-nokvm"),
        ]
        .into();
        let getenv = |name: &str| env.get(name).map(OsString::from);
        let s = Sources {
            cmdline: os(&[BINARY]),
            env_args: None,
            args_file: Some(
                b"-kernel\n$KDIR/${NAME}\n-cpu\n$CPU\n$UNSET\n${TWO}\n-machine\nq35$UNSET\n"
                    .to_vec(),
            ),
            cwd: PathBuf::from("/"),
            getenv: &getenv,
        };
        let c = run(&s);
        assert_eq!(c.kernel, Some(KernelArg::File(PathBuf::from(KERNEL))));
        // Expanded, then trimmed.
        assert_eq!(c.cpu.as_deref(), Some("host"));
        // Expansion happens before splitting into lines.
        assert!(c.debug && c.no_kvm);
        assert_eq!(c.machine.as_deref(), Some("q35"));
    }

    #[test]
    fn expansion_follows_go_os_expand() {
        let env: HashMap<&str, &str> = [("A", "x"), ("A_1", "y"), ("1", "one"), ("?", "q")].into();
        let getenv = |name: &str| env.get(name).map(OsString::from);
        let cases: &[(&[u8], &[u8])] = &[
            (b"$A", b"x"),
            (b"${A}", b"x"),
            (b"$A_1", b"y"),
            (b"${A}_1", b"x_1"),
            (b"$A-b", b"x-b"),
            (b"$1x", b"onex"),
            (b"${1}", b"one"),
            (b"$?", b"q"),
            (b"${?}", b"q"),
            (b"$B", b""),
            (b"a$", b"a$"),
            (b"$ a", b"$ a"),
            (b"$/", b"$/"),
            (b"${}", b""),
            (b"x${A", b"xA"),
            (b"$$", b""),
            (b"${A B}", b""),
            (b"\xff$A\xfe", b"\xffx\xfe"),
            (b"no dollars", b"no dollars"),
        ];
        for (input, want) in cases {
            assert_eq!(
                expand(input, &getenv),
                want.to_vec(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn trim_space_like_go() {
        assert_eq!(trim_space(b"  a b \r"), b"a b");
        assert_eq!(trim_space(b"\xc2\xa0x\xc2\x85"), b"x");
        assert_eq!(trim_space(b" \xff "), b"\xff");
        assert_eq!(trim_space(b"   "), b"");
        assert_eq!(trim_space(b""), b"");
        assert_eq!(trim_space(b"x"), b"x");
    }

    #[test]
    fn flags_from_a_file_follow_go_syntax_too() {
        let s = Sources {
            args_file: Some(b"-bogus\n".to_vec()),
            ..src(&["-kernel", KERNEL, BINARY])
        };
        assert_eq!(err(&s).to_string(), "flag provided but not defined: -bogus");
    }

    #[test]
    fn non_utf8_string_value_is_rejected() {
        let mut s = src(&["-kernel", KERNEL, "-machine"]);
        s.cmdline.push(OsString::from_vec(vec![b'q', 0xff]));
        s.cmdline.push(BINARY.into());
        let e = err(&s);
        assert!(matches!(
            e,
            ConfigError::InvalidValue {
                flag: "machine",
                ..
            }
        ));
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn errors_are_one_line() {
        for cmdline in [
            &["-foo"][..],
            &["-kernel"],
            &["-memory", "1"],
            &["-nokvm=x"],
            &["---"],
            &[][..],
            &["-kernel", KERNEL],
            &["-kernel", "/nonexistent", BINARY],
        ] {
            let msg = err_msg(cmdline);
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
        }
    }

    #[test]
    fn usage_lists_every_flag_sorted() {
        let names: Vec<&str> = FLAGS.iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(
            names,
            [
                "addFile",
                "addModule",
                "cpu",
                "debug",
                "env",
                "gdb",
                "hostRoot",
                "keepInitramfs",
                "kernel",
                "kernels",
                "machine",
                "memory",
                "modulesDir",
                "net",
                "noGoTestFlagRewrite",
                "noSnapshot",
                "nokvm",
                "qemuBin",
                "share",
                "smp",
                "standalone",
                "sysroot",
                "timeout",
                "transport",
                "tty",
                "verbose",
                "version",
            ]
        );
        let text = usage();
        assert!(text.starts_with("Usage: virtrun [flags...] binary [args...]\n"));
        assert!(text.contains("\n  -kernel path\n    \tkernel to use: an image file"));
        assert!(text.contains("\n  -nokvm\n    \t"));
        assert!(text.contains(&format!("(default {MEMORY_DEFAULT})")));
        assert!(text.contains(&format!("(default {SMP_DEFAULT})")));
        assert!(text.contains(&format!("{MEMORY_MIN} to {MEMORY_MAX}")));
        assert!(text.contains(&format!("{SMP_MIN} to {SMP_MAX}")));
        let mut at = 0;
        for name in names {
            let found = text[at..]
                .find(&format!("\n  -{name}"))
                .unwrap_or_else(|| panic!("-{name} missing or out of order"));
            at += found + 1;
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn every_flag_is_reachable() {
        // Each entry of the table parses (bools alone, the rest with a value).
        for spec in FLAGS {
            let mut raw = Raw::default();
            let value: &[u8] = match spec.flag {
                Flag::Memory => b"512",
                Flag::Smp => b"2",
                Flag::Gdb => b"1234",
                Flag::Transport => b"pci",
                Flag::Net => b"user",
                Flag::Timeout => b"10s",
                _ if spec.value.is_none() => b"true",
                _ => b"x",
            };
            raw.set(spec, value).unwrap();
        }
    }

    #[test]
    fn from_process_reads_real_state() {
        let s = Sources::from_process().unwrap();
        assert_eq!(s.cwd, std::env::current_dir().unwrap());
        assert_eq!((s.getenv)("PATH"), std::env::var_os("PATH"));
        assert_eq!(s.env_args, std::env::var_os(ARGS_ENV));
    }

    /// A unique directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "virtrun-config-test-{}-{tag}-{n}",
                std::process::id()
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn module_names_and_paths() {
        let c = run_args(&[
            "-kernel",
            KERNEL,
            "-addModule",
            "virtio-console,/etc/hostname",
            BINARY,
        ]);
        assert_eq!(c.add_modules[0], ModuleRef::Name("virtio_console".into()));
        assert_eq!(c.add_modules[1], ModuleRef::Path("/etc/hostname".into()));
        assert_eq!(c.add_modules.len(), 2);
        assert_eq!(
            err_msg(&["-kernel", KERNEL, "-addModule=x.ko", BINARY]),
            "-addModule: /x.ko: no such file"
        );
    }

    #[test]
    fn modules_dir_must_be_a_directory() {
        let c = run_args(&["-kernel", KERNEL, "-modulesDir", "/usr", BINARY]);
        assert_eq!(c.modules_dir, Some(PathBuf::from("/usr")));
        assert!(
            err_msg(&["-kernel", KERNEL, "-modulesDir", KERNEL, BINARY])
                .contains("not a directory")
        );
    }

    #[test]
    fn go_durations() {
        for (text, secs) in [
            ("90s", 90.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("1.5s", 1.5),
            ("300ms", 0.3),
            ("2m3.5s", 123.5),
            ("0", 0.0),
        ] {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in ["", "5", "s", "5x", "-5s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        let c = run_args(&["-kernel", KERNEL, "-timeout", "20s", BINARY]);
        assert_eq!(c.timeout, Some(Duration::from_secs(20)));
        assert!(err_msg(&["-kernel", KERNEL, "-timeout", "soon", BINARY]).contains("-timeout"));
    }
}
