//! TFTP packets: parse and encode, nothing else.
//!
//! Formats from RFC 1350 section 5 (RRQ, WRQ, DATA, ACK, ERROR) and RFC 2347 (options after the
//! mode of a request, and the OACK reply). Parsing takes any bytes and never panics: a datagram
//! is untrusted input, so every malformed case is a [`ParseError`] that the server counts.
//!
//! Leniency, where real clients need it:
//! - the mode and option names are matched without regard to case (RFC 1350 section 5,
//!   RFC 2347);
//! - after the mode, NUL padding and an incomplete trailing option are ignored (some PXE ROMs
//!   pad their requests);
//! - an ERROR packet is accepted without its message or its final NUL, because whatever a
//!   client meant by it, it wants the transfer to end.

use std::fmt;

/// Opcodes (RFC 1350 section 5, RFC 2347 for OACK).
pub mod opcode {
    pub const RRQ: u16 = 1;
    pub const WRQ: u16 = 2;
    pub const DATA: u16 = 3;
    pub const ACK: u16 = 4;
    pub const ERROR: u16 = 5;
    pub const OACK: u16 = 6;
}

/// Bytes before the payload of a DATA packet: opcode and block number.
pub const DATA_HEADER_LEN: usize = 4;

/// Transfer mode of a request (RFC 1350 section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Netascii,
    Octet,
    Mail,
}

impl Mode {
    /// The name sent on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }

    fn parse(name: &[u8]) -> Option<Mode> {
        [Mode::Netascii, Mode::Octet, Mode::Mail]
            .into_iter()
            .find(|m| name.eq_ignore_ascii_case(m.name().as_bytes()))
    }
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The file name as the client sent it (separators and case not yet interpreted).
    pub filename: String,
    pub mode: Mode,
    /// Option name and value pairs in the order sent, names as spelled by the client
    /// (RFC 2347: names are case-insensitive, compare with `eq_ignore_ascii_case`).
    pub options: Vec<(String, String)>,
}

/// Error codes (RFC 1350 section 5, RFC 2347 for code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotDefined,
    FileNotFound,
    AccessViolation,
    DiskFull,
    IllegalOperation,
    UnknownTransferId,
    FileExists,
    NoSuchUser,
    /// RFC 2347: the receiver of an OACK refuses the options.
    OptionsRefused,
    /// A code no RFC defines, kept as sent.
    Other(u16),
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::NotDefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTransferId => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionsRefused => 8,
            ErrorCode::Other(code) => code,
        }
    }

    pub fn from_code(code: u16) -> ErrorCode {
        match code {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionsRefused,
            other => ErrorCode::Other(other),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// One TFTP packet; DATA borrows its payload from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request),
    Wrq(Request),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: ErrorCode, message: String },
    Oack { options: Vec<(String, String)> },
}

/// Why a datagram is not a TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0} bytes is too short for a TFTP packet")]
    TooShort(usize),
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    #[error("the {0} is not terminated by a NUL byte")]
    Unterminated(&'static str),
    #[error("the {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("unknown transfer mode {0:?}")]
    UnknownMode(String),
    #[error("{0} packet has {1} bytes after its block number")]
    TrailingBytes(&'static str, usize),
}

impl ParseError {
    /// Whether the datagram was recognisably a request (RRQ or WRQ), so that the sender is
    /// worth an ERROR reply rather than silence.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            ParseError::Unterminated("file name" | "mode")
                | ParseError::NotUtf8("file name")
                | ParseError::UnknownMode(_)
        )
    }
}

impl<'a> Packet<'a> {
    /// Parses one datagram.
    pub fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, ParseError> {
        if bytes.len() < 2 {
            return Err(ParseError::TooShort(bytes.len()));
        }
        let op = u16::from_be_bytes([bytes[0], bytes[1]]);
        let body = &bytes[2..];
        match op {
            opcode::RRQ => parse_request(body).map(Packet::Rrq),
            opcode::WRQ => parse_request(body).map(Packet::Wrq),
            opcode::DATA => {
                let block = block_number(bytes)?;
                Ok(Packet::Data {
                    block,
                    data: &bytes[DATA_HEADER_LEN..],
                })
            }
            opcode::ACK => {
                let block = block_number(bytes)?;
                // RFC 1350 gives an ACK exactly four bytes; trailing bytes mean a confused
                // sender, and acting on its block number could skip data.
                match bytes.len() - DATA_HEADER_LEN {
                    0 => Ok(Packet::Ack { block }),
                    extra => Err(ParseError::TrailingBytes("ACK", extra)),
                }
            }
            opcode::ERROR => {
                let code = match body {
                    [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                    // An ERROR without even its code still says "stop".
                    _ => 0,
                };
                let text = body.get(2..).unwrap_or_default();
                let text = text.split(|&b| b == 0).next().unwrap_or_default();
                Ok(Packet::Error {
                    code: ErrorCode::from_code(code),
                    message: String::from_utf8_lossy(text).into_owned(),
                })
            }
            opcode::OACK => Ok(Packet::Oack {
                options: parse_options(body),
            }),
            other => Err(ParseError::UnknownOpcode(other)),
        }
    }

    /// Appends the encoded packet to `out`.
    ///
    /// Strings must not contain NUL bytes (the encoding could not be parsed back); netdeploy only
    /// encodes its own replies.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Rrq(req) | Packet::Wrq(req) => {
                let op = if matches!(self, Packet::Rrq(_)) {
                    opcode::RRQ
                } else {
                    opcode::WRQ
                };
                out.extend_from_slice(&op.to_be_bytes());
                put_str(out, &req.filename);
                put_str(out, req.mode.name());
                put_options(out, &req.options);
            }
            Packet::Data { block, data } => {
                out.extend_from_slice(&opcode::DATA.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
                out.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                out.extend_from_slice(&opcode::ACK.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                out.extend_from_slice(&opcode::ERROR.to_be_bytes());
                out.extend_from_slice(&code.code().to_be_bytes());
                put_str(out, message);
            }
            Packet::Oack { options } => {
                out.extend_from_slice(&opcode::OACK.to_be_bytes());
                put_options(out, options);
            }
        }
    }

    /// The encoded packet in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Writes the DATA header for `block` into the first [`DATA_HEADER_LEN`] bytes of `buf`, whose
/// payload the caller fills in place (no copy on the hot path).
///
/// # Panics
/// If `buf` is shorter than [`DATA_HEADER_LEN`].
pub fn write_data_header(buf: &mut [u8], block: u16) {
    buf[..2].copy_from_slice(&opcode::DATA.to_be_bytes());
    buf[2..4].copy_from_slice(&block.to_be_bytes());
}

/// An ERROR packet ready to send.
pub fn error_bytes(code: ErrorCode, message: &str) -> Vec<u8> {
    Packet::Error {
        code,
        message: message.to_owned(),
    }
    .to_bytes()
}

fn block_number(bytes: &[u8]) -> Result<u16, ParseError> {
    match bytes {
        [_, _, hi, lo, ..] => Ok(u16::from_be_bytes([*hi, *lo])),
        _ => Err(ParseError::TooShort(bytes.len())),
    }
}

/// Splits off one NUL-terminated field.
fn take_field<'b>(bytes: &'b [u8], what: &'static str) -> Result<(&'b [u8], &'b [u8]), ParseError> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(ParseError::Unterminated(what))?;
    Ok((&bytes[..end], &bytes[end + 1..]))
}

fn parse_request(body: &[u8]) -> Result<Request, ParseError> {
    let (filename, rest) = take_field(body, "file name")?;
    let filename = std::str::from_utf8(filename)
        .map_err(|_| ParseError::NotUtf8("file name"))?
        .to_owned();
    let (mode, rest) = take_field(rest, "mode")?;
    let mode = Mode::parse(mode)
        .ok_or_else(|| ParseError::UnknownMode(String::from_utf8_lossy(mode).into_owned()))?;
    Ok(Request {
        filename,
        mode,
        options: parse_options(rest),
    })
}

/// Option pairs; stops at padding (an empty name) or at an incomplete pair.
fn parse_options(mut bytes: &[u8]) -> Vec<(String, String)> {
    let mut options = Vec::new();
    while let Ok((name, rest)) = take_field(bytes, "option name") {
        if name.is_empty() {
            break;
        }
        let Ok((value, rest)) = take_field(rest, "option value") else {
            break;
        };
        options.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        bytes = rest;
    }
    options
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_options(out: &mut Vec<u8>, options: &[(String, String)]) {
    for (name, value) in options {
        put_str(out, name);
        put_str(out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rrq_with_options_in_any_case_parses() {
        let bytes = b"\x00\x01boot\\x64\\wdsmgfw.efi\x00OcTeT\x00BLKSIZE\x001468\x00tsize\x000\x00";
        let Packet::Rrq(req) = Packet::parse(bytes).unwrap() else {
            panic!("not an RRQ");
        };
        assert_eq!(req.filename, "boot\\x64\\wdsmgfw.efi");
        assert_eq!(req.mode, Mode::Octet);
        assert_eq!(
            req.options,
            vec![
                ("BLKSIZE".to_owned(), "1468".to_owned()),
                ("tsize".to_owned(), "0".to_owned())
            ]
        );
    }

    #[test]
    fn request_padding_and_incomplete_trailing_option_are_ignored() {
        let padded = b"\x00\x01f\x00octet\x00blksize\x00512\x00\x00\x00\x00";
        let cut = b"\x00\x01f\x00octet\x00blksize\x00512\x00windowsize\x00";
        for bytes in [&padded[..], &cut[..]] {
            let Packet::Rrq(req) = Packet::parse(bytes).unwrap() else {
                panic!("not an RRQ");
            };
            assert_eq!(req.options, vec![("blksize".to_owned(), "512".to_owned())]);
        }
    }

    #[test]
    fn truncated_and_unknown_packets_are_errors() {
        assert_eq!(Packet::parse(b""), Err(ParseError::TooShort(0)));
        assert_eq!(Packet::parse(b"\x00"), Err(ParseError::TooShort(1)));
        assert_eq!(
            Packet::parse(b"\x00\x01file"),
            Err(ParseError::Unterminated("file name"))
        );
        assert_eq!(
            Packet::parse(b"\x00\x01file\x00octet"),
            Err(ParseError::Unterminated("mode"))
        );
        assert_eq!(
            Packet::parse(b"\x00\x01file\x00binary\x00"),
            Err(ParseError::UnknownMode("binary".to_owned()))
        );
        assert_eq!(
            Packet::parse(b"\x00\x01\xff\xfe\x00octet\x00"),
            Err(ParseError::NotUtf8("file name"))
        );
        assert_eq!(Packet::parse(b"\x00\x04\x00"), Err(ParseError::TooShort(3)));
        assert_eq!(
            Packet::parse(b"\x00\x04\x00\x01\x00"),
            Err(ParseError::TrailingBytes("ACK", 1))
        );
        assert_eq!(
            Packet::parse(b"\x00\x09"),
            Err(ParseError::UnknownOpcode(9))
        );
        assert!(ParseError::UnknownMode(String::new()).is_request());
        assert!(!ParseError::UnknownOpcode(9).is_request());
    }

    #[test]
    fn error_packet_is_accepted_however_short() {
        for bytes in [&b"\x00\x05"[..], b"\x00\x05\x00", b"\x00\x05\x00\x08"] {
            assert!(matches!(Packet::parse(bytes), Ok(Packet::Error { .. })));
        }
        assert_eq!(
            Packet::parse(b"\x00\x05\x00\x08abort"),
            Ok(Packet::Error {
                code: ErrorCode::OptionsRefused,
                message: "abort".to_owned()
            })
        );
    }

    #[test]
    fn data_header_is_written_in_place() {
        let mut buf = [0xffu8; 6];
        write_data_header(&mut buf, 0x1234);
        assert_eq!(
            Packet::parse(&buf),
            Ok(Packet::Data {
                block: 0x1234,
                data: &[0xff, 0xff]
            })
        );
    }

    fn text() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,20}"
    }

    fn name() -> impl Strategy<Value = String> {
        "[^\u{0}]{1,20}"
    }

    fn options() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec((name(), text()), 0..5)
    }

    fn request() -> impl Strategy<Value = Request> {
        (
            text(),
            prop_oneof![Just(Mode::Netascii), Just(Mode::Octet), Just(Mode::Mail)],
            options(),
        )
            .prop_map(|(filename, mode, options)| Request {
                filename,
                mode,
                options,
            })
    }

    fn owned_packet() -> impl Strategy<Value = (u8, Request, u16, Vec<u8>, String)> {
        (
            0u8..6,
            request(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..600),
            text(),
        )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn requests_with_a_valid_opcode_never_panic(tail in prop::collection::vec(any::<u8>(), 0..100), op in 1u8..7) {
            let mut bytes = vec![0, op];
            bytes.extend(tail);
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn encode_then_parse_gives_the_same_packet((kind, req, number, data, message) in owned_packet()) {
            let packet = match kind {
                0 => Packet::Rrq(req),
                1 => Packet::Wrq(req),
                2 => Packet::Data { block: number, data: &data },
                3 => Packet::Ack { block: number },
                4 => Packet::Error { code: ErrorCode::from_code(number), message },
                _ => Packet::Oack { options: req.options },
            };
            let bytes = packet.to_bytes();
            prop_assert_eq!(Packet::parse(&bytes), Ok(packet));
        }
    }
}
