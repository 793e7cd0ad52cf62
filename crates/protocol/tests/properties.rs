//! Property tests of the wire contract (issue 7): frames survive any chunking,
//! no input makes a decoder panic, and every event and configuration reads
//! back as it was written.

use proptest::prelude::*;
use virtrun_protocol::{
    EXIT_MARKER, Event, FRAME_HEADER_LEN, Frame, GuestConfig, MAX_STDIN_FRAME, WindowSize,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        // Mostly short payloads, sometimes up to the largest frame the host sends.
        3 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Frame::Stdin),
        1 => proptest::collection::vec(any::<u8>(), 0..=MAX_STDIN_FRAME).prop_map(Frame::Stdin),
        1 => Just(Frame::StdinEof),
        1 => any::<u8>().prop_map(Frame::Signal),
    ]
}

/// Text for an [`Event::Error`]: any characters but a newline, and never the
/// exit marker, which [`Event::parse`] finds anywhere in a line on purpose. A
/// trailing CR is dropped too: [`Event::parse`] takes it for half of a CR LF
/// line ending (a CR inside the message stays).
fn error_message() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        // Near misses of the markers.
        "(VIRTRUN_[A-Z_:]{0,12} ?)?-?[0-9]{0,4}",
    ]
    .prop_map(|s| s.replace('\n', " ").trim_end_matches('\r').to_owned())
    .prop_filter("contains the exit marker", |s| !s.contains(EXIT_MARKER))
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Ready),
        Just(Event::Started),
        any::<usize>().prop_map(Event::StdinAck),
        any::<i32>().prop_map(Event::Signaled),
        Just(Event::OutOfMemory),
        error_message().prop_map(Event::Error),
        any::<i32>().prop_map(Event::ExitCode),
    ]
}

/// Feeds `wire` to a decoder in pieces of the given sizes (cycled), draining
/// every complete frame as soon as it is there, as the guest does.
fn decode_in_chunks(wire: &[u8], sizes: &[usize]) -> (Vec<Frame>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut rest = wire;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some((frame, used)) = Frame::decode(&buf).expect("valid wire") {
            assert!(used >= FRAME_HEADER_LEN && used <= buf.len());
            got.push(frame);
            buf.drain(..used);
        }
    }
    (got, buf)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frames_survive_any_chunking(
        frames in proptest::collection::vec(frame(), 0..16),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let (got, left) = decode_in_chunks(&wire, &sizes);
        prop_assert_eq!(got, frames);
        prop_assert!(left.is_empty());
    }

    #[test]
    fn frame_decode_never_panics(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        // A plausible header (small kind, small or huge length), then anything.
        (
            0u8..5,
            prop_oneof![0u32..8, any::<u32>()],
            proptest::collection::vec(any::<u8>(), 0..16),
        ).prop_map(|(kind, len, tail)| {
            let mut b = vec![kind];
            b.extend_from_slice(&len.to_le_bytes());
            b.extend(tail);
            b
        }),
    ]) {
        match Frame::decode(&bytes) {
            Ok(Some((frame, used))) => {
                prop_assert!(used <= bytes.len());
                // What decodes re-encodes to exactly the bytes it came from.
                prop_assert_eq!(&frame.encode()[..], &bytes[..used]);
            }
            Ok(None) => prop_assert!(bytes.len() < FRAME_HEADER_LEN + MAX_STDIN_FRAME),
            Err(e) => prop_assert!(!e.to_string().contains('\n')),
        }
    }

    #[test]
    fn frame_decode_of_a_prefix_asks_for_more(frame in frame(), cut in any::<prop::sample::Index>()) {
        let wire = frame.encode();
        let cut = cut.index(wire.len());
        prop_assert_eq!(Frame::decode(&wire[..cut]).unwrap(), None);
    }

    #[test]
    fn guest_config_round_trips(
        serial in any::<bool>(),
        verbose in any::<bool>(),
        args in proptest::collection::vec(
            proptest::collection::vec(1u8..=255, 0..24), 0..8),
    ) {
        let cfg = GuestConfig {
            argv0: args.first().cloned().unwrap_or_default(),
            env: args.iter().skip(1).cloned().collect(),
            outputs: args.iter().rev().cloned().collect(),
            host_root: !verbose,
            shares: args.iter().skip(2).cloned().collect(),
            cwd: args.last().cloned().unwrap_or_default(),
            exec: args.first().cloned().unwrap_or_default(),
            bind_main: serial,
            tty: verbose.then_some(WindowSize { rows: args.len() as u16, cols: 0 }),
            args,
            verbose,
        };
        prop_assert_eq!(GuestConfig::decode(&cfg.encode()).unwrap(), cfg);
    }

    #[test]
    fn guest_config_decode_never_panics(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            // Mostly well-formed pairs, to get past the framing checks.
            proptest::collection::vec(
                prop_oneof![
                    Just(b"layout".to_vec()),
                    Just(b"serial".to_vec()),
                    Just(b"virtio".to_vec()),
                    Just(b"verbose".to_vec()),
                    Just(b"arg".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..4),
                ],
                0..8,
            ).prop_map(|fields| fields.iter().flat_map(|f| f.iter().copied().chain([0])).collect()),
        ],
    ) {
        if let Err(e) = GuestConfig::decode(&bytes) {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn event_parse_never_panics(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        // Marker prefixes followed by anything.
        (
            prop::sample::select(vec![
                "VIRTRUN_READY", "VIRTRUN_STARTED", "VIRTRUN_STDIN_ACK: ", "VIRTRUN_SIGNALED: ",
                "VIRTRUN_OOM", "VIRTRUN_ERROR: ", "VIRTRUN_EXIT_CODE: ", "xVIRTRUN_EXIT_CODE: -",
            ]),
            proptest::collection::vec(any::<u8>(), 0..16),
        ).prop_map(|(p, tail)| p.bytes().chain(tail).collect()),
    ]) {
        let _ = Event::parse(&bytes);
    }

    #[test]
    fn events_round_trip_through_display(event in event()) {
        let line = event.to_string();
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(Event::parse(line.as_bytes()), Some(event.clone()));
        // A serial line may end in CR LF; the CR is not part of the event.
        prop_assert_eq!(Event::parse(format!("{line}\r").as_bytes()), Some(event));
    }

    #[test]
    fn exit_marker_is_found_after_any_output(
        before in proptest::collection::vec(any::<u8>(), 0..32),
        code in any::<i32>(),
    ) {
        // Output before the marker may be cut mid-character; the marker still counts.
        prop_assume!(!String::from_utf8_lossy(&before).contains(EXIT_MARKER));
        let mut line = before;
        line.extend_from_slice(Event::ExitCode(code).to_string().as_bytes());
        prop_assert_eq!(Event::parse(&line), Some(Event::ExitCode(code)));
    }
}
