//! Received files: what the guest sends back of the outputs, written to
//! the host paths the user gave, streamed and bounded.

use super::*;
use crate::pack::gotest::Output;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Where a file the guest sends is written on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// A path the user named (a go test flag): used as named, as go test
    /// would, symlinks and all.
    Named(std::path::PathBuf),
    /// A file the guest named in an output directory the user named.
    InDir(std::path::PathBuf),
}

impl Target {
    pub(super) fn path(&self) -> &Path {
        match self {
            Target::Named(p) | Target::InDir(p) => p,
        }
    }

    /// Creates the file, only now that the guest sent it (a file the guest
    /// never wrote is left alone). A file the guest named replaces the
    /// directory entry: whatever was there, a symlink or a hard link to a
    /// file elsewhere, is unlinked, never written through.
    pub(super) fn create(&self) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match self {
            Target::Named(path) => std::fs::File::create(path),
            Target::InDir(path) => {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(path)
            }
        }
    }
}

/// The host file for output `id` with the name the guest gave: a file
/// output takes no name, a directory output a plain one that stays inside
/// it. Anything else is refused: the guest chooses no path on the host.
pub(super) fn output_target(outputs: &[Output], id: u32, name: &str) -> Result<Target, String> {
    let output = outputs
        .get(id as usize)
        .ok_or_else(|| "the guest sent an output that was not asked for".to_string())?;
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= 255;
    match (output.dir, name) {
        (false, "") => Ok(Target::Named(output.host.clone())),
        (true, _) if plain => Ok(Target::InDir(output.host.join(name))),
        _ => Err(format!("refused the file name {name:?} the guest chose")),
    }
}

/// How long a file from the guest may stop arriving before the run counts
/// as broken: a guest that announced more than it sends has put the
/// channel out of step, and nothing after it can be read as events.
pub(super) const FILE_STALL: Duration = Duration::from_secs(10);

/// Writes the next `len` bytes of the control channel to `target`; without
/// a target they are read and dropped. The bytes are streamed: nothing is
/// allocated for the size the guest announced, and a write that fails on
/// the host still reads the rest, to keep the channel in step. Ends with
/// [`io::ErrorKind::TimedOut`] when nothing arrived for `stall`.
pub(super) fn receive_file(
    reader: &mut impl Read,
    len: u64,
    target: Option<&Target>,
    stall: Duration,
) -> io::Result<()> {
    let mut write_error = None;
    let mut file = match target.map(Target::create).transpose() {
        Ok(file) => file,
        Err(e) => {
            write_error = Some(e);
            None
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut last = Instant::now();
    while got < len {
        let want = usize::try_from(len - got).map_or(buf.len(), |left| left.min(buf.len()));
        match reader.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("got {got} of {len} bytes"),
                ));
            }
            Ok(n) => {
                got += n as u64;
                last = Instant::now();
                if let Some(f) = &mut file
                    && let Err(e) = f.write_all(&buf[..n])
                {
                    write_error = Some(e);
                    file = None;
                }
            }
            Err(e) if timed_out(&e) => {
                if last.elapsed() >= stall {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("stopped arriving after {got} of {len} bytes"),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    write_error.map_or(Ok(()), Err)
}

/// Copies a standalone port to its host file, created (truncated) only once
/// the first bytes arrive, so a file the guest never wrote is left alone.
/// The port is read to its end whatever happens to the file.
pub(super) fn copy_port_to_file(from: impl Read, target: Option<&Path>) -> Result<(), String> {
    let mut file: Option<std::fs::File> = None;
    let mut failure: Option<String> = None;
    for_each_chunk(from, |chunk| {
        let (Some(target), None) = (target, &failure) else {
            return;
        };
        let written = match &mut file {
            Some(f) => f.write_all(chunk),
            None => target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(target))
                .and_then(|mut f| {
                    f.write_all(chunk)?;
                    file = Some(f);
                    Ok(())
                }),
        };
        if let Err(e) = written {
            failure = Some(format!("{}: {e}", target.display()));
        }
    });
    failure.map_or(Ok(()), Err)
}
