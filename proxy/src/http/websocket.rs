//! RFC 6455 framing read incrementally from one direction of a connection:
//! where each frame starts and ends, and its payload unmasked for the leak
//! scanner, messages apart from control frames ([`Payloads`]). Pure, no
//! I/O; payloads are never buffered (they pass in whatever pieces the
//! socket gave), only a frame's head (≤ 14 bytes).
//!
//! Bridle removes the agent's extension offer before forwarding the
//! upgrade, so no frame may set an RSV bit: one that does (RSV1 is
//! permessage-deflate's "compressed") carries bytes the scanner cannot
//! read, and is an error here.

use std::fmt;

/// The header that offers and accepts extensions (permessage-deflate).
pub const EXTENSIONS: &str = "sec-websocket-extensions";

/// Close code for a message policy refused (RFC 6455 §7.4.1).
pub const POLICY_VIOLATION: u16 = 1008;
/// Close code for a frame that breaks the protocol.
pub const PROTOCOL_ERROR: u16 = 1002;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASKED: u8 = 0x80;
const CLOSE: u8 = 0x8;
/// A control frame's payload limit, which bounds a close reason.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame this reader cannot follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits set although no extension was negotiated.
    Reserved { opcode: u8, bits: u8 },
    /// A 64-bit payload length with its most significant bit set (§5.2).
    Length,
    /// A control frame that is fragmented or longer than 125 bytes (§5.5).
    Control { opcode: u8 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Reserved { opcode, bits } => write!(
                f,
                "a frame (opcode {opcode:#x}) with reserved bits {bits:#05b} set, as a compressing extension \
                 would, though none was negotiated"
            ),
            FrameError::Length => f.write_str("a frame whose 64-bit length has its top bit set"),
            FrameError::Control { opcode } => {
                write!(f, "a control frame (opcode {opcode:#x}) that is fragmented or longer than 125 bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Where one direction's byte stream is in its frames.
#[derive(Debug, Default)]
pub struct Frames {
    /// The current frame's head while it is incomplete.
    head: [u8; 14],
    have: usize,
    /// Payload bytes still to come in the current frame.
    left: u64,
    mask: [u8; 4],
    /// Position in the mask's cycle of the next payload byte.
    phase: usize,
    /// The current frame is a control frame (ping, pong, close).
    control: bool,
    /// The current frame ends its message.
    fin: bool,
}

/// The payloads in one piece of a stream, unmasked, as the receiving
/// application sees them: data frames' payloads run together (a message's
/// fragments join, and [`Payloads::message_ends`] says where each message
/// ended); control frames' payloads apart, each followed by a newline
/// (a ping between two fragments is not part of the message).
#[derive(Debug, Default)]
pub struct Payloads {
    pub data: Vec<u8>,
    /// Offsets in `data` where a message ended.
    pub message_ends: Vec<usize>,
    pub control: Vec<u8>,
}

impl Payloads {
    pub fn clear(&mut self) {
        self.data.clear();
        self.message_ends.clear();
        self.control.clear();
    }

    /// `data` with a newline after each message that ended in it: what the
    /// application reads, message by message, with a boundary a scanner
    /// sees (two messages do not glue into one word).
    pub fn separated(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + self.message_ends.len());
        let mut start = 0;
        for &end in &self.message_ends {
            out.extend_from_slice(&self.data[start..end]);
            out.push(b'\n');
            start = end;
        }
        out.extend_from_slice(&self.data[start..]);
        out
    }
}

impl Frames {
    /// Follows `bytes`, the stream's next piece, adding the payload bytes
    /// in it, unmasked, to `payloads`.
    pub fn feed(&mut self, bytes: &[u8], payloads: &mut Payloads) -> Result<(), FrameError> {
        self.follow(bytes, Some(payloads))
    }

    /// Follows `bytes` for the frame boundaries only.
    pub fn skip(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.follow(bytes, None)
    }

    fn follow(&mut self, mut bytes: &[u8], mut payloads: Option<&mut Payloads>) -> Result<(), FrameError> {
        while !bytes.is_empty() {
            if self.left > 0 {
                let take = usize::try_from(self.left).map_or(bytes.len(), |left| left.min(bytes.len()));
                if let Some(payloads) = payloads.as_deref_mut() {
                    let payload = if self.control { &mut payloads.control } else { &mut payloads.data };
                    let start = payload.len();
                    payload.extend_from_slice(&bytes[..take]);
                    if self.mask != [0; 4] {
                        for byte in &mut payload[start..] {
                            *byte ^= self.mask[self.phase];
                            self.phase = (self.phase + 1) % 4;
                        }
                    }
                }
                self.left -= take as u64;
                bytes = &bytes[take..];
                if self.left == 0 {
                    self.frame_ended(payloads.as_deref_mut());
                }
                continue;
            }
            self.head[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have == 1 && self.head[0] & RSV != 0 {
                let (opcode, bits) = (self.head[0] & 0x0f, (self.head[0] & RSV) >> 4);
                return Err(FrameError::Reserved { opcode, bits });
            }
            if self.have >= 2 && self.have == self.head_len() {
                self.start_payload()?;
                if self.left == 0 {
                    self.frame_ended(payloads.as_deref_mut());
                }
            }
        }
        Ok(())
    }

    fn frame_ended(&self, payloads: Option<&mut Payloads>) {
        match payloads {
            Some(payloads) if self.control => payloads.control.push(b'\n'),
            Some(payloads) if self.fin => payloads.message_ends.push(payloads.data.len()),
            _ => {}
        }
    }

    /// Whether the stream is between frames: a frame of Bridle's may go
    /// in here without corrupting one in flight.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    /// The head's full length, known once its first two bytes are in.
    fn head_len(&self) -> usize {
        let extended = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + extended + if self.head[1] & MASKED != 0 { 4 } else { 0 }
    }

    fn start_payload(&mut self) -> Result<(), FrameError> {
        let (len, at) = match self.head[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([self.head[2], self.head[3]])), 4),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.head[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            short => (u64::from(short), 2),
        };
        if len >> 63 != 0 {
            return Err(FrameError::Length);
        }
        let opcode = self.head[0] & 0x0f;
        (self.fin, self.control) = (self.head[0] & FIN != 0, opcode & 0x8 != 0);
        if self.control && (!self.fin || len > MAX_CONTROL_PAYLOAD as u64) {
            return Err(FrameError::Control { opcode });
        }
        self.mask = [0; 4];
        if self.head[1] & MASKED != 0 {
            self.mask.copy_from_slice(&self.head[at..at + 4]);
        }
        self.left = len;
        self.phase = 0;
        self.have = 0;
        Ok(())
    }
}

/// A server's close frame (unmasked) with `code` and as much of `reason`
/// as fits, cut at a character boundary.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.push(FIN | CLOSE);
    frame.push((2 + reason.len()) as u8);
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's frame: FIN, `opcode`, masked with `mask`.
    fn masked(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(MASKED | n as u8),
            n if n <= 0xffff => {
                frame.push(MASKED | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(MASKED | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn payloads_are_unmasked_however_the_stream_is_cut() {
        let big = vec![b'x'; 70_000];
        let mut stream = masked(0x1, b"hello", [1, 2, 3, 4]);
        stream.extend(masked(0x2, &[0u8; 300], [0xff, 0, 0x10, 7]));
        stream.extend(masked(0x9, b"", [9, 9, 9, 9]));
        stream.extend(masked(0x1, &big, [5, 6, 7, 8]));
        let mut expected = b"hello".to_vec();
        expected.extend_from_slice(&[0u8; 300]);
        expected.extend_from_slice(&big);
        for cut in [1, 2, 3, 7, 13, 64, 4096, stream.len()] {
            let (mut frames, mut whole) = (Frames::default(), Vec::new());
            let mut ends = Vec::new();
            for piece in stream.chunks(cut) {
                let mut payloads = Payloads::default();
                frames.feed(piece, &mut payloads).expect("valid frames");
                assert!(payloads.control.iter().all(|b| *b == b'\n'), "the ping's payload is apart");
                ends.extend(payloads.message_ends.iter().map(|end| whole.len() + end));
                whole.extend_from_slice(&payloads.data);
            }
            assert_eq!(whole, expected, "pieces of {cut}");
            assert_eq!(ends, [5, 305, expected.len()], "pieces of {cut}");
            assert!(frames.at_boundary());
        }
    }

    #[test]
    fn boundaries_are_known_between_frames_only() {
        let frame = masked(0x1, b"abc", [1, 1, 1, 1]);
        let (mut frames, mut payloads) = (Frames::default(), Payloads::default());
        for (i, byte) in frame.iter().enumerate() {
            assert_eq!(frames.at_boundary(), i == 0, "before byte {i}");
            frames.feed(&[*byte], &mut payloads).expect("valid");
        }
        assert!(frames.at_boundary());
        // A server's frames are not masked.
        frames.feed(&[0x81, 2, b'o', b'k'], &mut payloads).expect("valid");
        assert!(frames.at_boundary());
        assert_eq!(payloads.separated(), b"abc\nok\n");
        frames.skip(&[0x82, 126, 0, 200]).expect("valid");
        frames.skip(&[0; 199]).expect("valid");
        assert!(!frames.at_boundary());
        frames.skip(&[0]).expect("valid");
        assert!(frames.at_boundary());
    }

    #[test]
    fn compressed_frames_and_impossible_lengths_are_refused() {
        let mut compressed = masked(0x1, b"\xf2\x48\xcd\xc9\xc9\x07\x00", [1, 2, 3, 4]);
        compressed[0] |= 0x40;
        let error = Frames::default().feed(&compressed, &mut Payloads::default()).expect_err("RSV1");
        assert_eq!(error, FrameError::Reserved { opcode: 1, bits: 0b100 });
        assert!(error.to_string().contains("reserved bits 0b100"), "{error}");
        let mut huge = vec![0x82, MASKED | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(Frames::default().feed(&huge, &mut Payloads::default()), Err(FrameError::Length));
        let long_ping = masked(0x9, &[b'p'; 126], [1, 2, 3, 4]);
        assert_eq!(Frames::default().skip(&long_ping), Err(FrameError::Control { opcode: 9 }));
        let mut fragmented_close = masked(0x8, b"", [1, 2, 3, 4]);
        fragmented_close[0] &= !FIN;
        assert_eq!(Frames::default().skip(&fragmented_close), Err(FrameError::Control { opcode: 8 }));
    }

    #[test]
    fn close_frames_fit_a_control_frame_and_cut_at_a_character() {
        let frame = close_frame(POLICY_VIOLATION, "denied");
        assert_eq!(frame, [0x88, 8, 0x03, 0xf0, b'd', b'e', b'n', b'i', b'e', b'd']);
        let long = "é".repeat(100);
        let frame = close_frame(POLICY_VIOLATION, &long);
        assert!(frame.len() - 2 <= MAX_CONTROL_PAYLOAD, "{}", frame.len());
        assert_eq!(usize::from(frame[1]), frame.len() - 2);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        let mut frames = Frames::default();
        frames.skip(&frame).expect("a valid frame");
        assert!(frames.at_boundary());
    }

    #[test]
    fn a_control_frame_between_fragments_stays_out_of_the_message() {
        let mut first = masked(0x1, b"key=AKIAIOSF", [1, 2, 3, 4]);
        first[0] &= !FIN;
        let mut stream = first;
        stream.extend(masked(0xa, b"Z", [4, 3, 2, 1]));
        stream.extend(masked(0x0, b"ODNN7EXAMPLE", [9, 8, 7, 6]));
        let (mut frames, mut payloads) = (Frames::default(), Payloads::default());
        frames.feed(&stream, &mut payloads).expect("valid frames");
        assert_eq!(payloads.separated(), b"key=AKIAIOSFODNN7EXAMPLE\n");
        assert_eq!(payloads.control, b"Z\n");
    }
}
