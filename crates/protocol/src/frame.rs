//! Host to guest on the control channel: frames (a UART cannot express end-of-
//! file), with stdin flow-controlled by a window.

use super::*;

/// A message host → guest on the control channel.
///
/// Wire format: one byte kind, a little-endian `u32` payload length, the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the binary's stdin.
    Stdin(Vec<u8>),
    /// End of the binary's stdin.
    StdinEof,
    /// Deliver this signal number to the binary.
    Signal(u8),
    /// The host has every byte the guest reported with [`Event::Streams`]:
    /// the guest may end. (A virtio port's write returns once the data is
    /// queued, not once the host has it.)
    Done,
    /// The answer to [`Event::Parked`]: go on, as a guest of this moment.
    /// The guest answers with [`Event::Resumed`].
    Resume(Resume),
    /// The run: a `newc` cpio archive of this many bytes, which the init
    /// unpacks into its root (none when the run was in the initramfs
    /// already). The bytes follow the frame, or with
    /// [`BootConfig::run_disk`] are the start of that disk.
    Payload(u64),
    /// The host's terminal has a new size: the binary's terminal takes it
    /// (and its foreground process group gets `SIGWINCH`). Only with
    /// [`GuestConfig::tty`].
    Resize(WindowSize),
}

/// What makes a guest fresh, whether it booted or was restored from a
/// snapshot taken when it parked: the host's entropy and clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Bytes from the host's random source, added to the guest's pool, which
    /// is then reseeded.
    pub seed: [u8; 32],
    /// The host's wall clock: seconds since the epoch.
    pub secs: i64,
    /// The host's wall clock: nanoseconds within the second.
    pub nanos: u32,
}

impl Resume {
    const LEN: usize = 32 + 8 + 4;

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = self.seed.to_vec();
        out.extend_from_slice(&self.secs.to_le_bytes());
        out.extend_from_slice(&self.nanos.to_le_bytes());
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(Resume {
            seed: b[..32].try_into().ok()?,
            secs: i64::from_le_bytes(b[32..40].try_into().ok()?),
            nanos: u32::from_le_bytes(b[40..44].try_into().ok()?),
        })
    }
}

/// Most bytes of stdin the host sends in one frame.
pub const MAX_STDIN_FRAME: usize = 4096;

/// Most bytes of stdin the host has in flight before the guest acknowledges
/// them with [`Event::StdinAck`]. A UART has no flow control the guest can
/// exert, so the host must never send more than the guest is ready to buffer.
pub const STDIN_WINDOW: usize = 16 * 1024;

pub(super) const FRAME_STDIN: u8 = 1;
pub(super) const FRAME_STDIN_EOF: u8 = 2;
pub(super) const FRAME_SIGNAL: u8 = 3;
pub(super) const FRAME_DONE: u8 = 4;
pub(super) const FRAME_RESUME: u8 = 5;
pub(super) const FRAME_PAYLOAD: u8 = 6;
pub(super) const FRAME_RESIZE: u8 = 7;

/// Length of a frame header on the wire.
pub const FRAME_HEADER_LEN: usize = 5;

impl Frame {
    /// Serialises the frame.
    pub fn encode(&self) -> Vec<u8> {
        let owned;
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Stdin(data) => (FRAME_STDIN, data),
            Frame::StdinEof => (FRAME_STDIN_EOF, &[]),
            Frame::Signal(sig) => (FRAME_SIGNAL, std::slice::from_ref(sig)),
            Frame::Done => (FRAME_DONE, &[]),
            Frame::Resume(r) => {
                owned = r.encode();
                (FRAME_RESUME, &owned)
            }
            Frame::Payload(len) => {
                owned = len.to_le_bytes().to_vec();
                (FRAME_PAYLOAD, &owned)
            }
            Frame::Resize(size) => {
                owned = size.encode().to_vec();
                (FRAME_RESIZE, &owned)
            }
        };
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Decodes one frame from the front of `buf`: `Ok(Some((frame, used)))`
    /// when complete, `Ok(None)` when more bytes are needed.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
        let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_STDIN_FRAME {
            return Err(DecodeError(format!("frame of {len} bytes")));
        }
        let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(None);
        };
        let frame = match (header[0], payload) {
            (FRAME_STDIN, data) => Frame::Stdin(data.to_vec()),
            (FRAME_STDIN_EOF, []) => Frame::StdinEof,
            (FRAME_SIGNAL, [sig]) => Frame::Signal(*sig),
            (FRAME_DONE, []) => Frame::Done,
            (FRAME_RESUME, b) if Resume::decode(b).is_some() => {
                Frame::Resume(Resume::decode(b).unwrap_or_else(|| unreachable!()))
            }
            (FRAME_PAYLOAD, b) if b.len() == 8 => {
                Frame::Payload(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            (FRAME_RESIZE, b) if WindowSize::decode(b).is_some() => {
                Frame::Resize(WindowSize::decode(b).unwrap_or_default())
            }
            (kind, _) => return Err(DecodeError(format!("bad frame kind {kind}"))),
        };
        Ok(Some((frame, FRAME_HEADER_LEN + len)))
    }
}
