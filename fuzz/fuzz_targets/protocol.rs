//! The wire decoders on arbitrary bytes: frames, event lines and the guest
//! configuration. What decodes must encode back to something that decodes the
//! same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtrun_protocol::{Event, Frame, GuestConfig};

fuzz_target!(|data: &[u8]| {
    // Frames: decode one after another, as the guest drains its buffer.
    let mut rest = data;
    while let Ok(Some((frame, used))) = Frame::decode(rest) {
        assert!(used > 0 && used <= rest.len());
        assert_eq!(frame.encode(), rest[..used]);
        rest = &rest[used..];
    }

    // Events: the whole input as one line, and line by line.
    for line in std::iter::once(data).chain(data.split(|&b| b == b'\n')) {
        // A newline inside the whole input is not part of any one event.
        if let Some(event) = Event::parse(line)
            && !line.contains(&b'\n')
        {
            let again = Event::parse(event.to_string().as_bytes());
            assert_eq!(again.as_ref(), Some(&event), "line {line:?}");
        }
    }

    // Guest configuration: decode, encode, decode gives the same.
    if let Ok(config) = GuestConfig::decode(data) {
        assert_eq!(GuestConfig::decode(&config.encode()), Ok(config));
    }
});
