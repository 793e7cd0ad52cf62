//! Flag parsing, Go's `flag` package's way: the words become raw values,
//! the paths still as given, before anything is checked.

use super::flags::{FLAGS, Flag, FlagSpec};
use super::goflag::*;
use super::*;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Flag values as given: every flag that needs no checking already in its
/// place in the [`Config`] to be, the paths still as given.
#[derive(Default)]
pub(super) struct Raw {
    /// All but the paths and the binary.
    pub(super) config: Config,
    pub(super) kernel: Option<OsString>,
    pub(super) kernels: Vec<OsString>,
    pub(super) qemu_bin: Option<OsString>,
    pub(super) add_files: Vec<OsString>,
    pub(super) shares: Vec<OsString>,
    pub(super) add_modules: Vec<OsString>,
    pub(super) modules_dir: Option<OsString>,
    pub(super) sysroot: Option<OsString>,
    /// `-version`.
    pub(super) version: bool,
}

/// Go's `FlagSet.Parse`: returns the flag values and the positional words, or
/// `None` when help was asked for.
pub(super) fn parse_flags(words: &[OsString]) -> Result<Option<(Raw, &[OsString])>, ConfigError> {
    let mut raw = Raw::default();
    let mut i = 0;
    while let Some(word) = words.get(i) {
        let w = word.as_bytes();
        if w.len() < 2 || w[0] != b'-' {
            break;
        }
        let mut dashes = 1;
        if w[1] == b'-' {
            dashes = 2;
            if w.len() == 2 {
                i += 1;
                break;
            }
        }
        let body = &w[dashes..];
        if body.is_empty() || body[0] == b'-' || body[0] == b'=' {
            return Err(ConfigError::BadSyntax(lossy(w)));
        }
        i += 1;
        let (name, inline) = match body.iter().skip(1).position(|&b| b == b'=') {
            Some(at) => (&body[..=at], Some(&body[at + 2..])),
            None => (body, None),
        };
        let Some(spec) = FLAGS.iter().find(|s| s.name.as_bytes() == name) else {
            if name == b"help" || name == b"h" {
                return Ok(None);
            }
            return Err(ConfigError::UnknownFlag(lossy(name)));
        };
        let value = match (spec.value, inline) {
            (_, Some(v)) => v,
            (None, None) => b"true".as_slice(),
            (Some(_), None) => {
                let next = words
                    .get(i)
                    .ok_or(ConfigError::MissingArgument(spec.name))?;
                i += 1;
                next.as_bytes()
            }
        };
        raw.set(spec, value)?;
    }
    Ok(Some((raw, &words[i..])))
}

impl Raw {
    pub(super) fn set(&mut self, spec: &FlagSpec, value: &[u8]) -> Result<(), ConfigError> {
        let name = spec.name;
        if spec.value.is_none() {
            let on = parse_bool(value).ok_or_else(|| ConfigError::InvalidBool {
                flag: name,
                value: lossy(value),
            })?;
            match spec.flag {
                Flag::Debug => self.config.debug = on,
                Flag::HostRoot => self.config.host_root = on,
                Flag::KeepInitramfs => self.config.keep_initramfs = on,
                Flag::NoGoTestFlagRewrite => self.config.no_go_test_flag_rewrite = on,
                Flag::NoKvm => self.config.no_kvm = on,
                Flag::NoSnapshot => self.config.no_snapshot = on,
                Flag::Tty => self.config.tty = on,
                Flag::Standalone => self.config.standalone = on,
                Flag::Verbose => self.config.verbose = on,
                Flag::Version => self.version = on,
                other => unreachable!("-{name} ({other:?}) takes a value"),
            }
            return Ok(());
        }
        let invalid = |reason: &str| ConfigError::InvalidValue {
            flag: name,
            value: lossy(value),
            reason: reason.to_owned(),
        };
        let text = || std::str::from_utf8(value).map_err(|_| invalid("not valid UTF-8"));
        let os = || (!value.is_empty()).then(|| OsString::from_vec(value.to_vec()));
        match spec.flag {
            Flag::Kernel => self.kernel = os(),
            Flag::QemuBin => self.qemu_bin = os(),
            Flag::Machine => {
                self.config.machine = Some(text()?.to_owned()).filter(|m| !m.is_empty())
            }
            Flag::Cpu => self.config.cpu = Some(text()?.to_owned()),
            Flag::Transport => {
                let transport = Transport::from_bytes(value)
                    .ok_or_else(|| invalid("unknown transport type (want isa, pci or mmio)"))?;
                self.config.transport = Some(transport);
            }
            Flag::Memory => {
                self.config.memory_mb = ranged(name, value, MEMORY_MIN, MEMORY_MAX, invalid)?;
            }
            Flag::Net => {
                self.config.net = Net::from_bytes(value)
                    .ok_or_else(|| invalid("unknown network (want none or user)"))?;
            }
            Flag::Smp => self.config.smp = ranged(name, value, SMP_MIN, SMP_MAX, invalid)?,
            Flag::Gdb => {
                let port = ranged(name, value, 1, u16::MAX.into(), invalid)?;
                self.config.gdb = u16::try_from(port).ok();
            }
            Flag::AddFile => extend_list(&mut self.add_files, value),
            Flag::Kernels => extend_list(&mut self.kernels, value),
            Flag::Share => extend_list(&mut self.shares, value),
            Flag::AddModule => extend_list(&mut self.add_modules, value),
            Flag::ModulesDir => self.modules_dir = os(),
            Flag::Sysroot => self.sysroot = os(),
            Flag::Env => match os() {
                Some(var) if !var.as_bytes().starts_with(b"=") => self.config.env.push(var),
                Some(_) => return Err(invalid("want KEY=VALUE or KEY")),
                None => self.config.env.clear(),
            },
            Flag::Timeout => {
                let d = parse_go_duration(text()?).map_err(invalid)?;
                self.config.timeout = (!d.is_zero()).then_some(d);
            }
            other => unreachable!("-{name} ({other:?}) is a boolean"),
        }
        Ok(())
    }
}

/// List flag rules: comma-separated items, empty items skipped, an empty value
/// clears what came before.
pub(super) fn extend_list(list: &mut Vec<OsString>, value: &[u8]) {
    if value.is_empty() {
        list.clear();
        return;
    }
    list.extend(
        value
            .split(|&b| b == b',')
            .filter(|item| !item.is_empty())
            .map(|item| OsString::from_vec(item.to_vec())),
    );
}

/// An integer in Go syntax within `min..=max`.
pub(super) fn ranged(
    flag: &'static str,
    value: &[u8],
    min: u32,
    max: u32,
    invalid: impl Fn(&str) -> ConfigError,
) -> Result<u32, ConfigError> {
    let text = std::str::from_utf8(value).map_err(|_| invalid("parse error"))?;
    let got = parse_go_int(text).map_err(|e| invalid(e.as_str()))?;
    u32::try_from(got)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or(ConfigError::OutOfRange {
            flag,
            min,
            max,
            got,
        })
}
