//! Where the arguments come from: `VIRTRUN_ARGS` (split on whitespace), the
//! lines of `./.virtrun-args` (environment variables expanded as the original
//! does) and the command line, merged into one list.

use super::{ARGS_ENV, ARGS_FILE};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// Everything parsing depends on, so that it is pure and testable.
pub struct Sources<'a> {
    /// argv without argv\[0\].
    pub cmdline: Vec<OsString>,
    /// Value of `VIRTRUN_ARGS`.
    pub env_args: Option<OsString>,
    /// Content of `./.virtrun-args`, `None` if missing.
    pub args_file: Option<Vec<u8>>,
    /// Current directory, for making paths absolute.
    pub cwd: PathBuf,
    /// Environment lookup for `$VAR` / `${VAR}` expansion in `.virtrun-args`.
    pub getenv: &'a dyn Fn(&str) -> Option<OsString>,
}

pub(super) fn process_getenv(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

impl Sources<'static> {
    /// Reads the real process state: argv, `VIRTRUN_ARGS`, `./.virtrun-args`
    /// (missing = `None`, other read errors = `Err`) and the current directory.
    pub fn from_process() -> std::io::Result<Sources<'static>> {
        let cwd = std::env::current_dir()?;
        let args_file = match std::fs::read(cwd.join(ARGS_FILE)) {
            Ok(content) => Some(content),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("{ARGS_FILE}: {e}"))),
        };
        Ok(Sources {
            cmdline: std::env::args_os().skip(1).collect(),
            env_args: std::env::var_os(ARGS_ENV),
            args_file,
            cwd,
            getenv: &process_getenv,
        })
    }
}

/// `VIRTRUN_ARGS`, then `.virtrun-args`, then the command line, as one list.
pub(super) fn merged_words(src: &Sources) -> Vec<OsString> {
    let mut words: Vec<OsString> = Vec::new();
    if let Some(env) = &src.env_args {
        words.extend(
            fields(env.as_bytes())
                .into_iter()
                .map(|w| OsString::from_vec(w.to_vec())),
        );
    }
    if let Some(content) = &src.args_file {
        // Like the original: expand the whole file, then split it into lines.
        let expanded = expand(content, src.getenv);
        words.extend(
            expanded
                .split(|&b| b == b'\n')
                .map(trim_space)
                .filter(|line| !line.is_empty())
                .map(|line| OsString::from_vec(line.to_vec())),
        );
    }
    words.extend(src.cmdline.iter().cloned());
    words
}

/// Splits `b` into units — one UTF-8 character, or one run of invalid bytes —
/// each with its byte range and whether it is white space in Go's
/// `unicode.IsSpace` sense (the same set as Rust's `char::is_whitespace`).
pub(super) fn space_units(b: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut units = Vec::new();
    let mut pos = 0;
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            units.push((pos, pos + c.len_utf8(), c.is_whitespace()));
            pos += c.len_utf8();
        }
        let invalid = chunk.invalid().len();
        if invalid > 0 {
            units.push((pos, pos + invalid, false));
            pos += invalid;
        }
    }
    units
}

/// Go's `strings.Fields`.
pub(super) fn fields(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = None;
    for (from, _, space) in space_units(b) {
        match (space, start) {
            (false, None) => start = Some(from),
            (true, Some(s)) => {
                out.push(&b[s..from]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&b[s..]);
    }
    out
}

/// Go's `strings.TrimSpace`.
pub(super) fn trim_space(b: &[u8]) -> &[u8] {
    let units = space_units(b);
    let mut solid = units.iter().filter(|u| !u.2);
    match (solid.next(), solid.next_back()) {
        (Some(first), Some(last)) => &b[first.0..last.1],
        (Some(only), None) => &b[only.0..only.1],
        _ => &b[..0],
    }
}

/// Go's `os.Expand`: `$NAME`, `${NAME}` and the shell's one-character special
/// names; an unset variable expands to nothing, a `$` without a name stays.
pub(super) fn expand(s: &[u8], getenv: &dyn Fn(&str) -> Option<OsString>) -> Vec<u8> {
    let lookup = |name: &[u8]| -> Vec<u8> {
        std::str::from_utf8(name)
            .ok()
            .and_then(getenv)
            .map(OsString::into_vec)
            .unwrap_or_default()
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'$' || i + 1 == s.len() {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let (name, width) = shell_name(&s[i + 1..]);
        match name {
            Some(name) => out.extend(lookup(name)),
            // `$` followed by no name at all stays; bad `${` syntax is eaten.
            None if width == 0 => out.push(b'$'),
            None => {}
        }
        i += 1 + width;
    }
    out
}

/// Go's `os.getShellName`: the name after a `$` and how many bytes it spans.
pub(super) fn shell_name(s: &[u8]) -> (Option<&[u8]>, usize) {
    let special = |c: u8| {
        matches!(
            c,
            b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
        )
    };
    if s[0] == b'{' {
        if s.len() > 2 && special(s[1]) && s[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match s.iter().position(|&c| c == b'}') {
            Some(1) => (None, 2),
            Some(end) => (Some(&s[1..end]), end + 1),
            None => (None, 1),
        };
    }
    if special(s[0]) {
        return (Some(&s[..1]), 1);
    }
    let len = s
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    ((len > 0).then(|| &s[..len]), len)
}
