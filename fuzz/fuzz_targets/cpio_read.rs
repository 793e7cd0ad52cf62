//! The newc reader on arbitrary bytes: no panic, and what it reads is
//! consistent with the bytes it came from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtrun::pack::cpio::read_archive;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = read_archive(data) {
        // Each entry costs at least a 110-byte header, and so does the trailer.
        assert!(110 * (entries.len() + 1) <= data.len());
        let content: usize = entries.iter().map(|e| e.data.len()).sum();
        assert!(content <= data.len());
    }
});
