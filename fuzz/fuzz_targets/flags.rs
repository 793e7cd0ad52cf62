//! The flag parser on arbitrary sources.
//!
//! Input layout: one byte of switches (bit 0: `VIRTRUN_ARGS` is set, bit 1:
//! `.virtrun-args` exists, bit 2: variables expand to something), then
//! NUL-separated fields: `VIRTRUN_ARGS`, the file's content, and the command
//! line words (which, like real argv words, cannot hold a NUL).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use virtrun::config::{Parsed, Sources, parse};

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn some_env(name: &str) -> Option<OsString> {
    match name {
        "K" => Some("/etc/hostname".into()),
        "LINES" => Some("-debug\n-nokvm\n".into()),
        "ODD" => Some(OsString::from_vec(b"\xff\n-\n$K\n".to_vec())),
        "" => Some("empty".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&switches, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|&b| b == 0);
    let env_args = fields.next().map(|f| OsString::from_vec(f.to_vec()));
    let args_file = fields.next().map(<[u8]>::to_vec);
    let src = Sources {
        cmdline: fields.map(|w| OsString::from_vec(w.to_vec())).collect(),
        env_args: env_args.filter(|_| switches & 1 != 0),
        args_file: args_file.filter(|_| switches & 2 != 0),
        cwd: PathBuf::from("/"),
        getenv: if switches & 4 != 0 {
            &some_env
        } else {
            &no_env
        },
    };
    match parse(&src) {
        Ok(Parsed::Run(config)) => {
            assert!(config.kernel.is_absolute() && config.binary.is_absolute());
            assert!((128..=16384).contains(&config.memory_mb));
            assert!((1..=16).contains(&config.smp));
        }
        Ok(Parsed::Help | Parsed::Version) => {}
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
