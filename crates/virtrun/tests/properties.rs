//! Property tests of the host's parsers (issue 7): the flag parser, the ELF
//! reader, the `modules.dep` resolver, the cpio writer and the decoding of
//! standalone ports, through their
//! public APIs only. Each property is bounded (a few hundred cases, small
//! inputs) so the file runs in seconds as part of the normal suite.

use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use virtrun::config::{ConfigError, ModuleRef, Parsed, Sources, parse};
use virtrun::inspect::elf::inspect;
use virtrun::inspect::kernel::{KernelError, ModuleTree};
use virtrun::pack::cpio::{ReadEntry, Writer, mode, read_archive};
use virtrun::vm::port::Untty;
use virtrun_protocol::RAW_PORT_PREAMBLE;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

// ---------------------------------------------------------------------------
// Flag parser
// ---------------------------------------------------------------------------

/// Any regular file will do as a kernel: the parser only checks that.
const KERNEL: &str = "/etc/hostname";
const BINARY: &str = "/usr/bin/env";
/// Regular files for the list flags: no white space, so they survive
/// `VIRTRUN_ARGS` splitting.
const FILES: [&str; 3] = ["/etc/hostname", "/etc/passwd", "/usr/bin/env"];

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn some_env(name: &str) -> Option<OsString> {
    match name {
        "K" => Some("/etc/hostname".into()),
        "LINES" => Some("-debug\n-nokvm\n".into()),
        "ODD" => Some(OsString::from_vec(b"\xff\n-\n$K\n".to_vec())),
        _ => None,
    }
}

fn sources(cmdline: Vec<OsString>) -> Sources<'static> {
    Sources {
        cmdline,
        env_args: None,
        args_file: None,
        cwd: PathBuf::from("/"),
        getenv: &no_env,
    }
}

fn os(words: &[&[u8]]) -> Vec<OsString> {
    words
        .iter()
        .map(|w| OsString::from_vec(w.to_vec()))
        .collect()
}

/// The parse result in a comparable form: everything the caller can see.
fn outcome(src: &Sources) -> String {
    format!("{:?}", parse(src))
}

const VALUE_FLAGS: [&str; 11] = [
    "addFile",
    "addModule",
    "cpu",
    "kernel",
    "machine",
    "memory",
    "modulesDir",
    "qemuBin",
    "smp",
    "timeout",
    "transport",
];
const BOOL_FLAGS: [&str; 7] = [
    "debug",
    "keepInitramfs",
    "noGoTestFlagRewrite",
    "nokvm",
    "standalone",
    "verbose",
    "version",
];

/// A value worth giving to a flag: valid ones for every flag, near misses and
/// arbitrary bytes.
fn flag_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "/etc/hostname",
            "/etc/passwd",
            "/usr/bin/env",
            "/usr",
            "/nonexistent",
            "etc/passwd",
            "../etc/passwd",
            "virtio-console",
            "x.ko",
            "512",
            "0x200",
            "0o1000",
            "1_024",
            "-1",
            "16",
            "99999999999999999999",
            "pci",
            "isa",
            "mmio",
            "tape",
            "90s",
            "1h30m",
            "1.5s",
            "0",
            "-5s",
            "µs",
            "1e3s",
            "true",
            "false",
            "T",
            "q35",
            "max,pmu=off",
            "-debug",
            "--",
            "-",
            "=",
            "a,,b,",
            ",",
            "$K",
            "${K}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        bytes(12),
        "[0-9a-z_.,=/-]{0,12}".prop_map(String::into_bytes),
    ]
}

/// A word of a command line: flags in every spelling, values, or garbage.
fn word() -> impl Strategy<Value = Vec<u8>> {
    let flag_name = prop_oneof![
        prop::sample::select(VALUE_FLAGS.to_vec()),
        prop::sample::select(BOOL_FLAGS.to_vec()),
        prop::sample::select(vec!["h", "help", "bogus", "", "-", "=x"]),
    ];
    prop_oneof![
        3 => (prop::sample::select(vec!["-", "--", "---"]), flag_name, prop::option::of(flag_value()))
            .prop_map(|(dashes, name, value)| {
                let mut w = format!("{dashes}{name}").into_bytes();
                if let Some(v) = value {
                    w.push(b'=');
                    w.extend(v);
                }
                w
            }),
        2 => flag_value(),
        1 => bytes(16),
    ]
}

fn words(max: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(word(), 0..max)
}

/// One value flag with its value, or one boolean flag set on or off.
#[derive(Debug, Clone)]
enum Setting {
    Value(&'static str, Vec<u8>),
    Bool(&'static str, bool),
}

fn setting() -> impl Strategy<Value = Setting> {
    prop_oneof![
        3 => (prop::sample::select(VALUE_FLAGS.to_vec()), flag_value())
            .prop_map(|(f, v)| Setting::Value(f, v)),
        1 => (prop::sample::select(BOOL_FLAGS.to_vec()), any::<bool>())
            .prop_map(|(f, on)| Setting::Bool(f, on)),
    ]
}

/// The words for `setting` in the spelling `form` picks (0..4), the reference
/// spelling being `-name=value`.
fn spell(setting: &Setting, form: Option<u8>) -> Vec<Vec<u8>> {
    let (name, value) = match setting {
        Setting::Value(name, value) => (*name, value.clone()),
        Setting::Bool(name, on) => (
            *name,
            if *on {
                b"true".to_vec()
            } else {
                b"false".to_vec()
            },
        ),
    };
    let joined = |dashes: &str| {
        let mut w = format!("{dashes}{name}=").into_bytes();
        w.extend_from_slice(&value);
        vec![w]
    };
    match (setting, form) {
        (_, None) => joined("-"),
        (_, Some(0)) => joined("--"),
        // A boolean never takes the next word; `-name` alone means true.
        (Setting::Bool(_, true), Some(1)) => vec![format!("-{name}").into_bytes()],
        (Setting::Bool(_, true), Some(_)) => vec![format!("--{name}").into_bytes()],
        (Setting::Bool(..), Some(_)) => joined("-"),
        (Setting::Value(..), Some(1)) => vec![format!("-{name}").into_bytes(), value],
        (Setting::Value(..), Some(_)) => vec![format!("--{name}").into_bytes(), value],
    }
}

/// One occurrence of a list flag: items joined with commas, or an empty value
/// that clears the list.
#[derive(Debug, Clone)]
enum ListOp {
    Add(&'static str, Vec<&'static str>),
    Clear(&'static str),
}

fn list_op() -> impl Strategy<Value = ListOp> {
    let items =
        |pool: Vec<&'static str>| proptest::collection::vec(prop::sample::select(pool), 1..4);
    let files = items(FILES.to_vec());
    let mut pool = FILES.to_vec();
    pool.extend(["virtio-net", "9p"]);
    let modules = items(pool);
    prop_oneof![
        3 => files.prop_map(|items| ListOp::Add("addFile", items)),
        3 => modules.prop_map(|items| ListOp::Add("addModule", items)),
        1 => prop::sample::select(vec!["addFile", "addModule"]).prop_map(ListOp::Clear),
    ]
}

impl ListOp {
    fn flag(&self) -> &'static str {
        match self {
            ListOp::Add(f, _) | ListOp::Clear(f) => f,
        }
    }

    fn value(&self) -> String {
        match self {
            ListOp::Add(_, items) => items.join(","),
            ListOp::Clear(_) => String::new(),
        }
    }

    /// The words of this occurrence, as two words unless the value is empty
    /// (an empty word would vanish from `VIRTRUN_ARGS` and `.virtrun-args`).
    fn words(&self, separate: bool) -> Vec<String> {
        let (flag, value) = (self.flag(), self.value());
        if separate && !value.is_empty() {
            vec![format!("-{flag}"), value]
        } else {
            vec![format!("-{flag}={value}")]
        }
    }

    /// Applies the flag's documented semantics to the expected lists.
    fn apply(&self, files: &mut Vec<PathBuf>, modules: &mut Vec<ModuleRef>) {
        match self {
            ListOp::Clear("addFile") => files.clear(),
            ListOp::Clear(_) => modules.clear(),
            ListOp::Add("addFile", items) => files.extend(items.iter().map(PathBuf::from)),
            ListOp::Add(_, items) => modules.extend(items.iter().map(|item| {
                if item.starts_with('/') {
                    ModuleRef::Path(PathBuf::from(item))
                } else {
                    ModuleRef::Name(item.replace('-', "_"))
                }
            })),
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Whatever the three sources hold, parsing returns; a rejected command
    /// line gets a one-line message unless a word itself holds a newline.
    #[test]
    fn flag_parser_never_panics(
        cmdline in prop_oneof![
            words(10),
            proptest::collection::vec(bytes(12), 0..6),
            // Mostly valid command lines that get past the flags.
            (words(6), proptest::collection::vec(bytes(8), 0..3)).prop_map(|(mut w, tail)| {
                w.splice(0..0, [b"-kernel".to_vec(), KERNEL.as_bytes().to_vec()]);
                w.push(BINARY.as_bytes().to_vec());
                w.extend(tail);
                w
            }),
        ],
        env in prop::option::of(prop_oneof![
            bytes(40),
            (words(6), prop::sample::select(vec![" ", "\t", "\n", "\u{a0}", "\u{3000}"]))
                .prop_map(|(w, sep)| w.join(sep.as_bytes())),
        ]),
        file in prop::option::of(prop_oneof![
            bytes(40),
            words(6).prop_map(|w| w.join(&b"\n"[..])),
            proptest::collection::vec(
                prop::sample::select(vec!["$K", "${K}", "$LINES", "${ODD}", "$", "${", "$$", "${}", "-kernel", " -debug \r"]),
                0..6,
            ).prop_map(|w| w.join("\n").into_bytes()),
        ]),
        with_env in any::<bool>(),
    ) {
        let src = Sources {
            cmdline: cmdline.iter().map(|w| OsString::from_vec(w.clone())).collect(),
            env_args: env.map(OsString::from_vec),
            args_file: file,
            cwd: PathBuf::from("/"),
            getenv: if with_env { &some_env } else { &no_env },
        };
        if let Err(e) = parse(&src) {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
            if !cmdline.iter().any(|w| w.contains(&b'\n')) {
                prop_assert!(!msg.contains('\n'), "{:?}", msg);
            }
            let _: bool = e.wants_usage();
        }
    }

    /// `-x v`, `--x v`, `-x=v` and `--x=v` (and `-b` for `-b=true`) are one
    /// and the same to the parser, for any value, valid or not.
    #[test]
    fn flag_spellings_are_equivalent(
        settings in proptest::collection::vec((setting(), 0u8..3), 0..6),
        kernel_first in any::<bool>(),
    ) {
        let build = |use_form: bool| {
            let mut words: Vec<Vec<u8>> = Vec::new();
            if kernel_first {
                words.push(b"-kernel".to_vec());
                words.push(KERNEL.as_bytes().to_vec());
            }
            for (s, form) in &settings {
                words.extend(spell(s, use_form.then_some(*form)));
            }
            words.push(BINARY.as_bytes().to_vec());
            words.push(b"arg".to_vec());
            sources(words.into_iter().map(OsString::from_vec).collect())
        };
        prop_assert_eq!(outcome(&build(true)), outcome(&build(false)));
    }

    /// Everything after the binary belongs to the binary, byte for byte, even
    /// words that look like flags.
    #[test]
    fn arguments_after_the_binary_are_verbatim(
        args in proptest::collection::vec(
            prop_oneof![bytes(16), word()], 0..8),
        // Space-separated words: the binary, possibly after `--` or not clean.
        binary in prop::sample::select(vec![
            "/usr/bin/env", "-- /usr/bin/env", "usr/bin/env", "/usr/./bin/../bin/env",
        ]),
        flags in prop::sample::select(vec!["", "-debug", "-memory 512", "--smp=2 -nokvm=false"]),
    ) {
        let mut cmdline = os(&[b"-kernel", KERNEL.as_bytes()]);
        cmdline.extend(flags.split_whitespace().chain(binary.split_whitespace()).map(OsString::from));
        let args: Vec<OsString> = args.into_iter().map(OsString::from_vec).collect();
        cmdline.extend(args.iter().cloned());
        match parse(&sources(cmdline)) {
            Ok(Parsed::Run(c)) => {
                prop_assert_eq!(c.binary, PathBuf::from(BINARY));
                prop_assert_eq!(c.args, args);
            }
            other => prop_assert!(false, "expected a run, got {:?}", other),
        }
    }

    /// List flags accumulate across `VIRTRUN_ARGS`, `.virtrun-args` and the
    /// command line, in that order; an empty value clears what came before.
    #[test]
    fn list_flags_accumulate_in_order(
        env_ops in proptest::collection::vec((list_op(), any::<bool>()), 0..4),
        file_ops in proptest::collection::vec((list_op(), any::<bool>()), 0..4),
        cmd_ops in proptest::collection::vec((list_op(), any::<bool>()), 0..4),
        sep in prop::sample::select(vec![" ", "\t", "  \n ", "\u{a0}"]),
    ) {
        let spelled = |ops: &[(ListOp, bool)]| -> Vec<String> {
            ops.iter().flat_map(|(op, separate)| op.words(*separate)).collect()
        };
        let mut env = spelled(&env_ops);
        env.splice(0..0, ["-kernel".to_string(), KERNEL.to_string()]);
        let mut cmdline = spelled(&cmd_ops);
        cmdline.push(BINARY.to_string());
        let src = Sources {
            cmdline: cmdline.into_iter().map(OsString::from).collect(),
            env_args: Some(env.join(sep).into()),
            args_file: Some(spelled(&file_ops).join("\n").into_bytes()),
            cwd: PathBuf::from("/"),
            getenv: &no_env,
        };
        let (mut files, mut modules) = (Vec::new(), Vec::new());
        for (op, _) in env_ops.iter().chain(&file_ops).chain(&cmd_ops) {
            op.apply(&mut files, &mut modules);
        }
        match parse(&src) {
            Ok(Parsed::Run(c)) => {
                prop_assert_eq!(c.add_files, files);
                prop_assert_eq!(c.add_modules, modules);
            }
            other => prop_assert!(false, "expected a run, got {:?}", other),
        }
    }
}

/// A `ConfigError` is part of the public surface these tests lean on.
#[test]
fn config_errors_say_which_flag() {
    let e = parse(&sources(os(&[b"-memory", b"1", BINARY.as_bytes()]))).unwrap_err();
    assert!(
        matches!(e, ConfigError::OutOfRange { flag: "memory", .. }),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------
// ELF reader
// ---------------------------------------------------------------------------

/// The real ELF file the mutations start from.
const REAL_ELF: &str = "/usr/bin/bash";

fn real_elf() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| std::fs::read(REAL_ELF).expect("read the real ELF"))
}

/// The byte ranges of the real ELF that the reader looks at (headers,
/// `PT_INTERP`, `PT_DYNAMIC`, the dynamic string table): mutations aimed there
/// get past the first checks instead of landing in code.
fn hot_ranges() -> &'static [(usize, usize)] {
    static RANGES: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
    RANGES.get_or_init(|| {
        let data = real_elf();
        let elf = goblin::elf::Elf::parse(data).expect("the real ELF parses");
        let mut ranges = vec![(0, 64)];
        let ph_size = usize::from(elf.header.e_phentsize) * usize::from(elf.header.e_phnum);
        ranges.push((elf.header.e_phoff as usize, ph_size));
        for ph in &elf.program_headers {
            if matches!(
                ph.p_type,
                goblin::elf::program_header::PT_INTERP | goblin::elf::program_header::PT_DYNAMIC
            ) {
                ranges.push((ph.p_offset as usize, ph.p_filesz as usize));
            }
        }
        if let Some(dynamic) = &elf.dynamic {
            ranges.push((dynamic.info.strtab, dynamic.info.strsz.min(4096)));
        }
        ranges.retain(|&(start, len)| len > 0 && start + len <= data.len());
        ranges
    })
}

/// One change to the real ELF.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte of a hot range.
    FlipHot(Index, Index, u8),
    /// XOR one byte anywhere.
    Flip(Index, u8),
    /// Overwrite 8 bytes of a hot range with a value that breaks bounds.
    Word(Index, Index, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let nasty = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(0x7fff_ffff),
        Just(0x8000_0000_0000_0000),
        any::<u64>(),
        (0u64..0x20_0000),
    ];
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), 1u8..=255).prop_map(|(r, i, x)| Mutation::FlipHot(r, i, x)),
        1 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        2 => (any::<Index>(), any::<Index>(), nasty).prop_map(|(r, i, v)| Mutation::Word(r, i, v)),
    ]
}

impl Mutation {
    fn apply(&self, data: &mut [u8]) {
        let hot = hot_ranges();
        let hot_at = |r: &Index, i: &Index| {
            let (start, len) = hot[r.index(hot.len())];
            start + i.index(len)
        };
        match self {
            Mutation::FlipHot(r, i, x) => {
                let at = hot_at(r, i);
                if let Some(b) = data.get_mut(at) {
                    *b ^= x;
                }
            }
            Mutation::Flip(i, x) => {
                if !data.is_empty() {
                    data[i.index(data.len())] ^= x;
                }
            }
            Mutation::Word(r, i, v) => {
                let at = hot_at(r, i);
                for (k, b) in v.to_le_bytes().iter().enumerate() {
                    if let Some(d) = data.get_mut(at + k) {
                        *d = *b;
                    }
                }
            }
        }
    }
}

/// Writes `data` to a fresh temp file and inspects it: whatever the bytes,
/// the answer is an `ElfInfo` or a one-line error naming the file.
fn inspect_bytes(data: &[u8]) -> Result<(), TestCaseError> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    match inspect(file.path()) {
        Ok(info) => {
            if let Some(interp) = &info.interpreter {
                prop_assert!(!interp.as_os_str().is_empty());
                prop_assert!(!interp.as_os_str().as_bytes().contains(&0));
            }
            prop_assert!(info.needed.iter().all(|n| !n.is_empty()));
            prop_assert!(
                info.rpath
                    .iter()
                    .chain(&info.runpath)
                    .all(|p| !p.is_empty())
            );
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.contains('\n'), "{:?}", msg);
            prop_assert_eq!(e.path(), file.path());
            prop_assert!(
                msg.starts_with(&file.path().display().to_string()),
                "{:?}",
                msg
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn elf_reader_survives_arbitrary_bytes(data in prop_oneof![
        bytes(256),
        // The ELF magic and class bytes, then anything.
        (0u8..4, 0u8..4, bytes(300)).prop_map(|(class, endian, tail)| {
            let mut d = vec![0x7f, b'E', b'L', b'F', class, endian, 1];
            d.extend(tail);
            d
        }),
        // A real ELF header, then anything.
        bytes(512).prop_map(|tail| {
            let mut d = real_elf()[..64].to_vec();
            d.extend(tail);
            d
        }),
    ]) {
        inspect_bytes(&data)?;
    }

    #[test]
    fn elf_reader_survives_mutated_real_files(
        cut in prop_oneof![
            // Mostly whole files, else prefixes of the headers or of anything.
            2 => Just(None),
            1 => (0usize..4096).prop_map(Some),
            1 => any::<Index>().prop_map(|i| Some(i.index(real_elf().len()))),
        ],
        mutations in proptest::collection::vec(mutation(), 0..6),
    ) {
        let mut data = real_elf().to_vec();
        if let Some(cut) = cut {
            data.truncate(cut);
        }
        for m in &mutations {
            m.apply(&mut data);
        }
        inspect_bytes(&data)?;
    }
}

#[test]
fn the_unmutated_real_elf_is_read() {
    let info = inspect(Path::new(REAL_ELF)).unwrap();
    assert!(info.interpreter.is_some());
    assert!(!info.needed.is_empty());
}

// ---------------------------------------------------------------------------
// Module dependencies (modules.dep)
// ---------------------------------------------------------------------------

/// A module tree: which modules `modules.dep` lists (with their dependencies),
/// which files exist, which modules are built in.
#[derive(Debug, Clone)]
struct Tree {
    modules: Vec<Module>,
    /// Lines that are no module entry and must be skipped.
    junk: Vec<&'static str>,
}

#[derive(Debug, Clone)]
struct Module {
    /// Listed in `modules.dep` (else: a dependency without an entry).
    listed: bool,
    /// How the file exists: 0 missing, 1 as `.ko`, 2 as `.ko.xz` (listed as `.ko`).
    file: u8,
    builtin: bool,
    /// The file name spells `_` as `-`.
    dashed: bool,
    deps: Vec<usize>,
}

fn tree() -> impl Strategy<Value = Tree> {
    (1usize..10).prop_flat_map(|n| {
        let module = (
            prop::bool::weighted(0.9),
            prop::sample::select(vec![0u8, 1, 1, 1, 1, 1, 1, 1, 2, 2]),
            prop::bool::weighted(0.1),
            any::<bool>(),
            // Few edges, so that most graphs are acyclic and resolve.
            proptest::collection::vec(0..n, 0..3),
        )
            .prop_map(|(listed, file, builtin, dashed, deps)| Module {
                listed,
                file,
                builtin,
                dashed,
                deps,
            });
        let junk = proptest::collection::vec(
            prop::sample::select(vec![
                "",
                "# comment",
                "no colon here",
                "README: kernel/mod_0.ko",
                "kernel/x.txt: kernel/mod_1.ko",
            ]),
            0..3,
        );
        (proptest::collection::vec(module, n), junk)
            .prop_map(|(modules, junk)| Tree { modules, junk })
    })
}

impl Tree {
    fn file_name(&self, i: usize) -> String {
        if self.modules[i].dashed {
            format!("mod-{i}.ko")
        } else {
            format!("mod_{i}.ko")
        }
    }

    /// Lays the tree out under `root`.
    fn write(&self, root: &Path) {
        std::fs::create_dir_all(root.join("kernel/sub")).unwrap();
        let mut dep = String::new();
        let mut builtin = String::new();
        for (i, m) in self.modules.iter().enumerate() {
            let rel = format!("kernel/sub/{}", self.file_name(i));
            if m.listed {
                let deps: Vec<String> = m
                    .deps
                    .iter()
                    .map(|&d| format!("kernel/sub/{}", self.file_name(d)))
                    .collect();
                dep.push_str(&format!("{rel}: {}\n", deps.join(" ")));
            }
            match m.file {
                1 => std::fs::write(root.join(&rel), b"").unwrap(),
                2 => std::fs::write(root.join(format!("{rel}.xz")), b"").unwrap(),
                _ => {}
            }
            if m.builtin {
                builtin.push_str(&format!("{rel}\n"));
            }
        }
        for junk in &self.junk {
            dep.push_str(junk);
            dep.push('\n');
        }
        std::fs::write(root.join("modules.dep"), dep).unwrap();
        std::fs::write(root.join("modules.builtin"), builtin).unwrap();
    }

    /// Whether `resolve` can use module `i`: listed and its file is there.
    fn available(&self, i: usize) -> bool {
        let m = &self.modules[i];
        m.listed && m.file != 0
    }

    /// The non-built-in modules reachable from `roots`, whether a reachable
    /// one is missing, and whether the available ones reachable form a cycle.
    fn analyse(&self, roots: &[usize]) -> (HashSet<usize>, bool, bool) {
        let mut reached = HashSet::new();
        let mut missing = false;
        let mut todo: Vec<usize> = roots.to_vec();
        while let Some(i) = todo.pop() {
            if self.modules[i].builtin || !reached.insert(i) {
                continue;
            }
            if !self.available(i) {
                missing = true;
                continue;
            }
            todo.extend(&self.modules[i].deps);
        }
        // Kahn's algorithm on the reachable available modules.
        let nodes: Vec<usize> = reached
            .iter()
            .copied()
            .filter(|&i| self.available(i))
            .collect();
        let edges = |i: usize| {
            self.modules[i]
                .deps
                .iter()
                .copied()
                .filter(|d| nodes.contains(d))
                .collect::<HashSet<usize>>()
        };
        let mut pending: HashMap<usize, usize> =
            nodes.iter().map(|&i| (i, edges(i).len())).collect();
        let mut ready: Vec<usize> = pending.iter().filter(|e| *e.1 == 0).map(|e| *e.0).collect();
        let mut sorted = 0;
        while let Some(i) = ready.pop() {
            sorted += 1;
            for &j in &nodes {
                if edges(j).contains(&i) {
                    let left = pending.get_mut(&j).unwrap();
                    *left -= 1;
                    if *left == 0 {
                        ready.push(j);
                    }
                }
            }
        }
        (reached, missing, sorted < nodes.len())
    }
}

/// The module number of a resolved path (`.../mod_3.ko`, `.../mod-3.ko.xz`).
fn module_index(path: &Path) -> usize {
    let name = path.file_name().unwrap().to_str().unwrap();
    let stem = name.strip_suffix(".xz").unwrap_or(name);
    let stem = stem.strip_suffix(".ko").unwrap();
    stem[4..].parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        // A resolver that loops fails by timing out rather than hanging.
        timeout: 10_000,
        ..config(256)
    })]

    #[test]
    fn module_resolution_orders_dependencies_first(
        tree in tree(),
        picks in proptest::collection::vec((any::<Index>(), any::<bool>()), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        tree.write(dir.path());
        let n = tree.modules.len();
        let roots: Vec<usize> = picks.iter().map(|(i, _)| i.index(n)).collect();
        // Names as a user gives them: `-` and `_` are the same.
        let names: Vec<String> = picks
            .iter()
            .map(|(i, dashed)| format!("mod{}{}", if *dashed { '-' } else { '_' }, i.index(n)))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let modules = ModuleTree::open(dir.path()).unwrap();
        let (reached, missing, cycle) = tree.analyse(&roots);
        match modules.resolve(&names) {
            Ok(paths) => {
                prop_assert!(!missing && !cycle, "resolved despite missing={} cycle={}: {:?}", missing, cycle, paths);
                let order: Vec<usize> = paths.iter().map(|p| module_index(p)).collect();
                let unique: HashSet<usize> = order.iter().copied().collect();
                prop_assert_eq!(unique.len(), order.len(), "a module twice: {:?}", order);
                prop_assert_eq!(&unique, &reached, "not exactly the reachable modules");
                for (pos, &i) in order.iter().enumerate() {
                    prop_assert!(paths[pos].starts_with(dir.path()));
                    prop_assert!(paths[pos].is_file());
                    for &d in &tree.modules[i].deps {
                        if !tree.modules[d].builtin {
                            prop_assert!(
                                order[..pos].contains(&d),
                                "mod_{} comes before its dependency mod_{}: {:?}", i, d, order
                            );
                        }
                    }
                }
            }
            Err(KernelError::Cycle(name)) => {
                prop_assert!(cycle, "cycle through {} reported, none there", name);
            }
            Err(KernelError::UnknownModule { name, .. }) => {
                prop_assert!(missing, "{} reported unknown, none missing", name);
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }
}

// ---------------------------------------------------------------------------
// cpio writer and reader
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Entry {
    Dir(String, u32),
    File(String, u32, Vec<u8>),
    Symlink(String, String),
    Char(String, u32, u32, u32),
}

/// Any text up to `max` characters (cheaper than a regex strategy).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn entry_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(prop::sample::select(&b"abz09_./-"[..]), 0..24)
            .prop_map(|b| String::from_utf8(b).unwrap()),
        text(24),
    ]
    .prop_filter("the trailer's name", |n| n != "TRAILER!!!")
}

fn entry() -> impl Strategy<Value = Entry> {
    let perm = 0u32..0o10000;
    prop_oneof![
        (entry_name(), perm.clone()).prop_map(|(n, p)| Entry::Dir(n, p)),
        (entry_name(), perm.clone(), bytes(300)).prop_map(|(n, p, d)| Entry::File(n, p, d)),
        (entry_name(), text(40)).prop_map(|(n, t)| Entry::Symlink(n, t)),
        (entry_name(), perm, any::<u32>(), any::<u32>())
            .prop_map(|(n, p, ma, mi)| Entry::Char(n, p, ma, mi)),
    ]
}

impl Entry {
    fn write(&self, w: &mut Writer<Vec<u8>>) {
        match self {
            Entry::Dir(n, p) => w.dir(n, *p),
            Entry::File(n, p, d) => w.file(n, *p, d.len() as u64, &mut &d[..]),
            Entry::Symlink(n, t) => w.symlink(n, t),
            Entry::Char(n, p, ma, mi) => w.char_dev(n, *p, *ma, *mi),
        }
        .unwrap();
    }

    /// What reading the archive back must give (the inode aside).
    fn expected(&self) -> (String, u32, (u32, u32), Vec<u8>) {
        match self {
            Entry::Dir(n, p) => (n.clone(), mode::DIR | p, (0, 0), vec![]),
            Entry::File(n, p, d) => (n.clone(), mode::FILE | p, (0, 0), d.clone()),
            Entry::Symlink(n, t) => (
                n.clone(),
                mode::SYMLINK | 0o777,
                (0, 0),
                t.clone().into_bytes(),
            ),
            Entry::Char(n, p, ma, mi) => (n.clone(), mode::CHAR | p, (*ma, *mi), vec![]),
        }
    }
}

fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    for e in entries {
        e.write(&mut w);
    }
    w.finish().unwrap()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn cpio_round_trip(entries in proptest::collection::vec(entry(), 0..12)) {
        let data = archive(&entries);
        prop_assert_eq!(data.len() % 4, 0);
        let read = read_archive(&data).unwrap();
        let got: Vec<_> = read
            .iter()
            .map(|e: &ReadEntry| (e.name.clone(), e.mode, e.rdev, e.data.clone()))
            .collect();
        let want: Vec<_> = entries.iter().map(Entry::expected).collect();
        prop_assert_eq!(got, want);
        let inodes: HashSet<u32> = read.iter().map(|e| e.ino).collect();
        prop_assert_eq!(inodes.len(), read.len(), "inodes are unique");
    }

    #[test]
    fn cpio_strict_prefix_is_an_error(
        entries in proptest::collection::vec(entry(), 0..6),
        cut in any::<Index>(),
    ) {
        let data = archive(&entries);
        let cut = cut.index(data.len());
        prop_assert!(read_archive(&data[..cut]).is_err());
    }

    #[test]
    fn cpio_reader_survives_arbitrary_bytes(data in prop_oneof![
        bytes(400),
        // Well-formed archives with bytes flipped.
        (
            proptest::collection::vec(entry(), 0..4),
            proptest::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        ).prop_map(|(entries, flips)| {
            let mut data = archive(&entries);
            for (i, b) in flips {
                let at = i.index(data.len());
                data[at] = b;
            }
            data
        }),
    ]) {
        let _ = read_archive(&data);
    }
}

// ---------------------------------------------------------------------------
// Standalone ports: a guest tty's output processing undone
// ---------------------------------------------------------------------------

/// Bytes rich in the ones that matter here.
fn tty_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(b'\r'), Just(b'\n'), Just(0u8), any::<u8>()],
        0..200,
    )
}

/// `arrived` through [`Untty`] in pieces cut at `cuts`.
fn untty(arrived: &[u8], cuts: &[Index]) -> Vec<u8> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(arrived.len() + 1)).collect();
    at.push(0);
    at.push(arrived.len());
    at.sort_unstable();
    let mut decoder = Untty::default();
    let mut out = Vec::new();
    for w in at.windows(2) {
        decoder.push(&arrived[w[0]..w[1]], &mut out);
    }
    decoder.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(config(500))]

    /// What an init wrote through a tty in its default mode (each `\n` sent
    /// as `\r\n`) comes out exactly, however the bytes arrive.
    #[test]
    fn a_default_mode_tty_is_undone_exactly(
        written in tty_bytes(),
        cuts in proptest::collection::vec(any::<Index>(), 0..6),
    ) {
        prop_assume!(!written.starts_with(RAW_PORT_PREAMBLE));
        let arrived: Vec<u8> = written
            .iter()
            .flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] })
            .collect();
        prop_assert_eq!(untty(&arrived, &cuts), written);
    }

    /// After the preamble, every byte passes unchanged.
    #[test]
    fn an_announced_raw_port_is_unchanged(
        written in tty_bytes(),
        cuts in proptest::collection::vec(any::<Index>(), 0..6),
    ) {
        let mut arrived = RAW_PORT_PREAMBLE.to_vec();
        arrived.extend_from_slice(&written);
        prop_assert_eq!(untty(&arrived, &cuts), written);
    }
}
