//! go test's file flags (docs/reference.md#go-test--exec): a test binary run by
//! `go test -exec virtrun` is told where to write coverage and profiles on the
//! host; in the guest those paths do not exist. The flags are pointed at guest
//! files, and the files travel back to the host paths after the run.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use virtrun_protocol::{STANDALONE_STDOUT_PORT, standalone_port_path};

/// Flags whose value is a file the test writes.
const FILE_FLAGS: [&str; 6] = [
    "coverprofile",
    "blockprofile",
    "cpuprofile",
    "memprofile",
    "mutexprofile",
    "trace",
];

/// Where the rewritten files live in the guest.
pub const GUEST_DIR: &str = "/tmp/virtrun-out";

/// Where relative profile paths resolve in the guest (`-test.outputdir`).
const GUEST_OUTPUTDIR: &str = "/tmp";

/// Where the guest writes the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Our own init: files under [`GUEST_DIR`], sent back after the run.
    Files,
    /// A standalone init: each file flag points at the next host port from 2 on
    /// ([`standalone_port_path`]), whose bytes QEMU passes to the host file as
    /// they come (docs/reference.md#channels). `-test.gocoverdir` stays in the
    /// guest (`/tmp`), as with the original: a directory cannot travel on a
    /// port.
    Ports,
}

/// The first port that carries a file in standalone mode.
pub const FIRST_FILE_PORT: usize = STANDALONE_STDOUT_PORT + 1;

/// A file or directory the guest sends back after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Path in the guest.
    pub guest: PathBuf,
    /// Path on the host.
    pub host: PathBuf,
    /// A directory: every file in it comes back into `host`.
    pub dir: bool,
}

/// The arguments for the guest and the files to bring back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Arguments for the binary in the guest.
    pub args: Vec<OsString>,
    /// What to bring back.
    pub outputs: Vec<Output>,
}

/// A `-test.NAME` flag: its name and its inline value, if any.
fn test_flag(word: &[u8]) -> Option<(&str, Option<&[u8]>)> {
    let body = word
        .strip_prefix(b"--test.")
        .or_else(|| word.strip_prefix(b"-test."))?;
    let (name, value) = match body.iter().position(|&b| b == b'=') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    Some((std::str::from_utf8(name).ok()?, value))
}

/// Rewrites go test's file flags in `args` for `target`. `cwd` is where the
/// test binary would run (relative paths without `-test.outputdir` are
/// relative to it). With [`Target::Ports`], `outputs[i]` is port
/// `FIRST_FILE_PORT + i`.
pub fn rewrite(args: &[OsString], cwd: &Path, target: Target) -> Rewrite {
    // The outputdir applies to all relative profile paths, wherever it stands.
    let mut outputdir: Option<PathBuf> = None;
    let mut i = 0;
    while i < args.len() {
        if let Some(("outputdir", value)) = test_flag(args[i].as_bytes()) {
            let value = match value {
                Some(v) => Some(v.to_vec()),
                None => args.get(i + 1).map(|v| v.as_bytes().to_vec()),
            };
            outputdir = value.map(|v| cwd.join(OsString::from_vec(v)));
        }
        i += 1;
    }
    let base = outputdir.clone().unwrap_or_else(|| cwd.to_path_buf());

    let mut out = Rewrite::default();
    let mut i = 0;
    while i < args.len() {
        let word = &args[i];
        i += 1;
        let Some((name, inline)) = test_flag(word.as_bytes()) else {
            out.args.push(word.clone());
            continue;
        };
        let is_file = FILE_FLAGS.contains(&name);
        if !(is_file || name == "outputdir" || name == "gocoverdir") {
            out.args.push(word.clone());
            continue;
        }
        let value = match inline {
            Some(v) => v.to_vec(),
            None => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.as_bytes().to_vec()
                }
                None => {
                    out.args.push(word.clone());
                    continue;
                }
            },
        };
        let guest = match name {
            "outputdir" => PathBuf::from(GUEST_OUTPUTDIR),
            "gocoverdir" if target == Target::Ports => PathBuf::from(GUEST_OUTPUTDIR),
            "gocoverdir" => {
                let guest = Path::new(GUEST_DIR).join("gocoverdir");
                out.outputs.push(Output {
                    guest: guest.clone(),
                    host: cwd.join(OsString::from_vec(value)),
                    dir: true,
                });
                guest
            }
            _ => {
                let guest = match target {
                    Target::Files => Path::new(GUEST_DIR).join(out.outputs.len().to_string()),
                    Target::Ports => {
                        standalone_port_path(FIRST_FILE_PORT + out.outputs.len()).into()
                    }
                };
                out.outputs.push(Output {
                    guest: guest.clone(),
                    host: base.join(OsString::from_vec(value)),
                    dir: false,
                });
                guest
            }
        };
        let mut flag = OsString::from(format!("-test.{name}="));
        flag.push(guest);
        out.args.push(flag);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn profiles_point_at_guest_files_and_come_back() {
        let r = rewrite(
            &os(&[
                "-test.paniconexit0",
                "-test.coverprofile=/abs/cover.out",
                "-test.cpuprofile",
                "cpu.out",
                "-test.outputdir=/out",
                "-test.trace=t.out",
                "-test.run=TestX",
            ]),
            Path::new("/pkg"),
            Target::Files,
        );
        assert_eq!(
            r.args,
            os(&[
                "-test.paniconexit0",
                "-test.coverprofile=/tmp/virtrun-out/0",
                "-test.cpuprofile=/tmp/virtrun-out/1",
                "-test.outputdir=/tmp",
                "-test.trace=/tmp/virtrun-out/2",
                "-test.run=TestX",
            ])
        );
        let hosts: Vec<_> = r.outputs.iter().map(|o| o.host.clone()).collect();
        assert_eq!(
            hosts,
            [
                PathBuf::from("/abs/cover.out"),
                "/out/cpu.out".into(),
                "/out/t.out".into()
            ]
        );
        assert!(r.outputs.iter().all(|o| !o.dir));
    }

    #[test]
    fn gocoverdir_comes_back_as_a_directory() {
        let r = rewrite(
            &os(&["--test.gocoverdir=cov"]),
            Path::new("/pkg"),
            Target::Files,
        );
        assert_eq!(
            r.args,
            os(&["-test.gocoverdir=/tmp/virtrun-out/gocoverdir"])
        );
        assert_eq!(
            r.outputs,
            [Output {
                guest: "/tmp/virtrun-out/gocoverdir".into(),
                host: "/pkg/cov".into(),
                dir: true
            }]
        );
    }

    #[test]
    fn other_arguments_are_untouched() {
        let args = os(&[
            "-test.v",
            "-test.count=1",
            "arg",
            "-coverprofile=x",
            "-test.trace",
        ]);
        let r = rewrite(&args, Path::new("/"), Target::Files);
        assert_eq!(r.args, args);
        assert!(r.outputs.is_empty());
    }

    #[test]
    fn relative_paths_without_outputdir_use_the_cwd() {
        let r = rewrite(
            &os(&["-test.memprofile=m.out"]),
            Path::new("/pkg"),
            Target::Files,
        );
        assert_eq!(r.outputs[0].host, PathBuf::from("/pkg/m.out"));
    }

    #[test]
    fn standalone_files_go_to_ports_from_2_in_argument_order() {
        let r = rewrite(
            &os(&[
                "-test.trace=t.out",
                "-test.coverprofile=/abs/cover.out",
                "-test.gocoverdir=/host/cov",
                "-test.outputdir",
                "/out",
                "-test.v",
            ]),
            Path::new("/pkg"),
            Target::Ports,
        );
        assert_eq!(
            r.args,
            os(&[
                "-test.trace=/dev/virtrun2",
                "-test.coverprofile=/dev/virtrun3",
                "-test.gocoverdir=/tmp",
                "-test.outputdir=/tmp",
                "-test.v",
            ])
        );
        let outputs: Vec<_> = r.outputs.iter().map(|o| (&o.guest, &o.host)).collect();
        assert_eq!(
            outputs,
            [
                (
                    &PathBuf::from("/dev/virtrun2"),
                    &PathBuf::from("/out/t.out")
                ),
                (&"/dev/virtrun3".into(), &"/abs/cover.out".into()),
            ]
        );
    }
}
