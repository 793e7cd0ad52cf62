//! A Go binary's build information (what `go version -m` shows), read to
//! tell which release of the original virtrun a standalone init was built
//! with: its `sysinit` changed how it writes to ports 1 and up twice, and
//! the host must undo what that release did (see [`PortEncoding`]).
//!
//! The information sits in the `.go.buildinfo` blob: a 32-byte header
//! (`\xff Go buildinf:`, the pointer size, flags) followed, since Go 1.18,
//! by two length-prefixed strings, the Go version and the module text,
//! whose lines are tab-separated (`path`, `mod`, `dep`, `=>`, `build`).
//! Older binaries (pointers instead of inline strings) count as having
//! none.

use std::path::Path;

/// The original's module.
const ORIGINAL: &str = "github.com/aibor/virtrun";

/// The blob's magic, at a 16-byte aligned offset of the file.
const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Flag of the header: the strings follow it inline (Go 1.18 and later).
const INLINE_STRINGS: u8 = 2;

/// How an init writes to the ports after the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortEncoding {
    /// The tty's default mode: each `\n` arrives as `\r\n`, unless the port
    /// begins with virtrun's raw preamble (the original up to v0.14, and
    /// every init that is not the original's).
    Tty,
    /// A standard base64 stream, line breaks to be ignored (v0.15.0 to
    /// v0.15.3).
    Base64,
    /// The bytes exactly (raw ports, v0.15.4 on).
    Raw,
}

/// The encoding of the init `binary` and why, in words for `-debug`.
pub fn port_encoding(binary: &Path) -> (PortEncoding, String) {
    let modules = match read_modules(binary) {
        Some(m) => m,
        None => return (PortEncoding::Tty, "no Go build information".into()),
    };
    match original_version(&modules) {
        Some(Version::Tagged(v)) => (encoding_of_tag(&v), format!("{ORIGINAL} {v}")),
        Some(Version::Devel(time)) => {
            let why = match &time {
                Some(t) => format!("{ORIGINAL} (devel), vcs.time {t}"),
                None => format!("{ORIGINAL} (devel) without vcs.time: its current source"),
            };
            let encoding = time
                .as_deref()
                .map_or(PortEncoding::Raw, |t| encoding_of_date(&t.replace('-', "")));
            (encoding, why)
        }
        None => (PortEncoding::Tty, format!("a Go binary without {ORIGINAL}")),
    }
}

/// The module text of `binary`'s build information.
fn read_modules(binary: &Path) -> Option<String> {
    let file = std::fs::File::open(binary).ok()?;
    // SAFETY: a private read-only mapping; a file changed meanwhile gives
    // wrong bytes, which are only parsed.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let mut at = 0;
    let data = loop {
        let i = at + memchr::memmem::find(&map[at..], MAGIC)?;
        if i % 16 == 0 {
            break &map[i..];
        }
        at = i + 1;
    };
    if data.len() < 32 || data[15] & INLINE_STRINGS == 0 {
        return None;
    }
    let (_go_version, rest) = varint_string(&data[32..])?;
    let (modules, _) = varint_string(rest)?;
    // Framed by 16-byte sentinels; it begins with the main package's path.
    let text = modules.get(16..modules.len().checked_sub(16)?)?;
    text.starts_with(b"path\t")
        .then(|| String::from_utf8_lossy(text).into_owned())
}

/// A string prefixed by its length as an unsigned varint.
fn varint_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let start = i + 1;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            return Some((data.get(start..end)?, &data[end..]));
        }
    }
    None
}

/// The original's version a binary was built with.
#[derive(Debug, PartialEq, Eq)]
enum Version {
    /// A required version (also under a `replace`).
    Tagged(String),
    /// The original itself, built from its source: its `vcs.time`.
    Devel(Option<String>),
}

fn original_version(modules: &str) -> Option<Version> {
    let fields = |line: &str| line.split('\t').map(str::to_owned).collect::<Vec<_>>();
    let mut main_is_original = false;
    let mut time = None;
    let mut dep = None;
    for line in modules.lines() {
        let f = fields(line);
        match (f.first().map(String::as_str), f.get(1), f.get(2)) {
            (Some("mod"), Some(path), _) if path == ORIGINAL => main_is_original = true,
            (Some("dep"), Some(path), Some(version)) if path == ORIGINAL => {
                dep = Some(version.clone());
            }
            (Some("build"), Some(setting), _) => {
                if let Some(t) = setting.strip_prefix("vcs.time=") {
                    time = Some(t.to_owned());
                }
            }
            _ => {}
        }
    }
    if main_is_original {
        return Some(Version::Devel(time));
    }
    dep.map(|v| match v.as_str() {
        "(devel)" => Version::Devel(None),
        _ => Version::Tagged(v),
    })
}

/// The encoding of a module version: a pseudo-version by its commit's
/// time, a release by where it sorts (pre-releases before their release).
fn encoding_of_tag(version: &str) -> PortEncoding {
    if let Some(time) = pseudo_version_time(version) {
        return encoding_of_date(time);
    }
    let Some(v) = Semver::parse(version) else {
        return PortEncoding::Tty;
    };
    if v < Semver::parse("v0.15.0-rc0").expect("valid") {
        PortEncoding::Tty
    } else if v < Semver::parse("v0.15.4").expect("valid") {
        PortEncoding::Base64
    } else {
        PortEncoding::Raw
    }
}

/// The encoding of a commit made at `time` (`yyyymmdd…`, digits first):
/// base64 from the commit of 2025-07-23, raw from that of 2026-02-24.
fn encoding_of_date(time: &str) -> PortEncoding {
    let day: String = time.chars().filter(char::is_ascii_digit).take(8).collect();
    if day.len() < 8 || day.as_str() < "20250723" {
        PortEncoding::Tty
    } else if day.as_str() < "20260224" {
        PortEncoding::Base64
    } else {
        PortEncoding::Raw
    }
}

/// The time of a pseudo-version (`vX.Y.Z-[pre.]0.yyyymmddhhmmss-abcdef123456`
/// or `vX.Y.Z-yyyymmddhhmmss-abcdef123456`).
fn pseudo_version_time(version: &str) -> Option<&str> {
    let (rest, hash) = version.rsplit_once('-')?;
    let (_, time) = rest.rsplit_once(['-', '.'])?;
    let hex = hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = time.len() == 14 && time.bytes().all(|b| b.is_ascii_digit());
    (hex && digits).then_some(time)
}

/// A semantic version, ordered as Go orders module versions.
#[derive(Debug, PartialEq, Eq)]
struct Semver {
    core: [u64; 3],
    pre: Vec<String>,
}

impl Semver {
    fn parse(v: &str) -> Option<Semver> {
        let v = v.strip_prefix('v')?;
        let v = v.split_once('+').map_or(v, |(v, _build)| v);
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, pre.split('.').map(str::to_owned).collect()),
            None => (v, Vec::new()),
        };
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let core = [parts.next()??, parts.next()??, parts.next()??];
        parts.next().is_none().then_some(Semver { core, pre })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Semver {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let by_pre = match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                let ident = |a: &String, b: &String| match (a.parse::<u64>(), b.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => a.cmp(b),
                };
                self.pre
                    .iter()
                    .zip(&other.pre)
                    .map(|(a, b)| ident(a, b))
                    .find(|o| o.is_ne())
                    .unwrap_or(self.pre.len().cmp(&other.pre.len()))
            }
        };
        self.core.cmp(&other.core).then(by_pre)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_and_their_encodings() {
        for (version, want) in [
            ("v0.13.2", PortEncoding::Tty),
            ("v0.14.0", PortEncoding::Tty),
            ("v0.14.9-rc1", PortEncoding::Tty),
            ("v0.15.0-beta1", PortEncoding::Tty),
            ("v0.15.0-rc0", PortEncoding::Base64),
            ("v0.15.0-rc1", PortEncoding::Base64),
            ("v0.15.0", PortEncoding::Base64),
            ("v0.15.2", PortEncoding::Base64),
            ("v0.15.3", PortEncoding::Base64),
            ("v0.15.4-rc1", PortEncoding::Base64),
            ("v0.15.4", PortEncoding::Raw),
            ("v0.16.0", PortEncoding::Raw),
            ("v1.0.0+incompatible", PortEncoding::Raw),
            ("not a version", PortEncoding::Tty),
        ] {
            assert_eq!(encoding_of_tag(version), want, "{version}");
        }
    }

    #[test]
    fn pseudo_versions_by_their_commits_time() {
        for (version, want) in [
            ("v0.14.1-0.20250722235959-0123456789ab", PortEncoding::Tty),
            (
                "v0.14.1-0.20250723101112-0123456789ab",
                PortEncoding::Base64,
            ),
            (
                "v0.15.4-0.20260223000000-abcdefabcdef",
                PortEncoding::Base64,
            ),
            ("v0.15.4-0.20260224120000-abcdefabcdef", PortEncoding::Raw),
            ("v0.0.0-20240101000000-abcdefabcdef", PortEncoding::Tty),
            (
                "v0.15.0-rc1.0.20260301000000-abcdefabcdef",
                PortEncoding::Raw,
            ),
        ] {
            assert_eq!(encoding_of_tag(version), want, "{version}");
        }
    }

    #[test]
    fn the_original_found_as_a_dependency_or_the_main_module() {
        let replaced = "path\texample.com/init\nmod\texample.com/init\t(devel)\t\n\
            dep\tgithub.com/aibor/virtrun\tv0.15.2\n=>\t../fake\t(devel)\t\n\
            build\tvcs.time=2020-01-01T00:00:00Z\n";
        assert_eq!(
            original_version(replaced),
            Some(Version::Tagged("v0.15.2".into()))
        );
        let devel = "path\tgithub.com/aibor/virtrun/cmd\nmod\tgithub.com/aibor/virtrun\t(devel)\t\n\
            build\tvcs.time=2025-08-01T10:00:00Z\n";
        assert_eq!(
            original_version(devel),
            Some(Version::Devel(Some("2025-08-01T10:00:00Z".into())))
        );
        assert_eq!(original_version("path\tx\nmod\tx\t(devel)\t\n"), None);
    }

    #[test]
    fn a_binary_without_go_build_information() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("init");
        // The magic alone, not at an aligned offset, then garbage.
        let mut bytes = b"\x7fELF  ".to_vec();
        bytes.extend_from_slice(MAGIC);
        bytes.extend([0xff; 64]);
        std::fs::write(&file, bytes).unwrap();
        let (encoding, why) = port_encoding(&file);
        assert_eq!(encoding, PortEncoding::Tty);
        assert_eq!(why, "no Go build information");
    }
}
