//! The ELF reader on arbitrary file contents.
//!
//! `inspect` takes a path, so each input is written to a per-process file that
//! is unlinked at once and reached through `/proc/self/fd`: nothing is left
//! behind however the run ends.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use virtrun::inspect::elf::inspect;

struct Scratch {
    file: File,
    path: PathBuf,
}

fn scratch() -> &'static Mutex<Scratch> {
    static SCRATCH: OnceLock<Mutex<Scratch>> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let named = std::env::temp_dir().join(format!("virtrun-fuzz-elf-{}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&named)
            .expect("create the scratch file");
        std::fs::remove_file(&named).expect("unlink the scratch file");
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        Mutex::new(Scratch { file, path })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut s = scratch().lock().unwrap();
    s.file.set_len(0).unwrap();
    s.file.rewind().unwrap();
    s.file.write_all(data).unwrap();
    match inspect(&s.path) {
        Ok(info) => {
            assert!(info.needed.iter().all(|n| !n.is_empty()));
            if let Some(interp) = &info.interpreter {
                assert!(!interp.as_os_str().is_empty());
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg:?}");
        }
    }
});
