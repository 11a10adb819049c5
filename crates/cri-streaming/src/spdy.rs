//! SPDY/3.1 framing (draft-mbelshe-httpbis-spdy-00 with the 3.1 flow
//! control): control frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS,
//! PING, GOAWAY, HEADERS, WINDOW_UPDATE) and data frames, and header blocks
//! compressed with zlib over the spec's dictionary, one compression context
//! per direction for the whole session.

use std::collections::BTreeMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub(crate) const VERSION: u16 = 3;
/// A frame's payload is at most 2^24 - 1 bytes.
pub(crate) const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// Decoded header blocks larger than this are refused.
const MAX_HEADERS: usize = 256 * 1024;

/// FLAG_FIN: the sender's last frame on the stream.
pub(crate) const FLAG_FIN: u8 = 0x01;

/// The names SPDY/3's zlib dictionary starts with, each as a 32-bit length
/// and the bytes, and the text it ends with (the spec's section 2.6.10.1).
const DICT_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICT_TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413\
414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently\
400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error\
501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec \
00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,\
deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The header compression dictionary.
pub(crate) fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1424);
    for w in DICT_WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(DICT_TAIL.as_bytes());
    d
}

/// Headers: lowercase names, each with its values (NUL-separated on the wire).
pub(crate) type Headers = BTreeMap<String, Vec<String>>;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    /// A control frame of a type this side does not know: ignored, as the
    /// spec says.
    Unknown {
        kind: u16,
    },
}

/// The 8 bytes before a DATA frame's `len` (at most [`MAX_PAYLOAD`]) bytes
/// of payload.
pub(crate) fn data_header(stream: u32, flags: u8, len: usize) -> [u8; 8] {
    let s = (stream & 0x7fff_ffff).to_be_bytes();
    let l = (len.min(MAX_PAYLOAD) as u32).to_be_bytes();
    [s[0], s[1], s[2], s[3], flags, l[1], l[2], l[3]]
}

/// A session's two header compression contexts.
pub(crate) struct Codec {
    deflate: Compress,
    inflate: Decompress,
    /// Whether the peer's stream has taken the dictionary yet.
    inflate_primed: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
        .ok_or_else(|| "frame too short".to_string())
}

impl Codec {
    pub(crate) fn new() -> Result<Self, String> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dictionary())
            .map_err(|e| format!("zlib dictionary: {e}"))?;
        Ok(Self {
            deflate,
            inflate: Decompress::new(true),
            inflate_primed: false,
        })
    }

    /// A header block, compressed (sync-flushed, so the peer can read it
    /// without waiting for more).
    fn compress(&mut self, h: &Headers) -> Result<Vec<u8>, String> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(h.len() as u32).to_be_bytes());
        for (k, vs) in h {
            let v = vs.join("\0");
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before_in = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| format!("compressing headers: {e}"))?;
            let used = (self.deflate.total_in() - before_in) as usize;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Decodes a compressed header block, bounded.
    fn decompress(&mut self, block: &[u8]) -> Result<Headers, String> {
        let mut out: Vec<u8> = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.len() >= MAX_HEADERS {
                return Err("header block too large".into());
            }
            out.reserve(1024);
            let before_in = self.inflate.total_in();
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            match r {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
                Err(e) if e.needs_dictionary().is_some() && !self.inflate_primed => {
                    self.inflate
                        .set_dictionary(&dictionary())
                        .map_err(|e| format!("zlib dictionary: {e}"))?;
                    self.inflate_primed = true;
                }
                Err(e) => return Err(format!("inflating headers: {e}")),
            }
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        parse_block(&out)
    }

    /// A frame's bytes.
    pub(crate) fn encode(&mut self, f: &Frame) -> Result<Vec<u8>, String> {
        let control = |kind: u16, flags: u8, body: Vec<u8>| -> Result<Vec<u8>, String> {
            if body.len() > MAX_PAYLOAD {
                return Err("frame payload too large".into());
            }
            let mut v = Vec::with_capacity(8 + body.len());
            v.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            v.extend_from_slice(&kind.to_be_bytes());
            v.push(flags);
            v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            v.extend_from_slice(&body);
            Ok(v)
        };
        match f {
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err("frame payload too large".into());
                }
                let mut v = Vec::with_capacity(8 + data.len());
                v.extend_from_slice(&data_header(*stream, *flags, data.len()));
                v.extend_from_slice(data);
                Ok(v)
            }
            Frame::SynStream {
                stream,
                associated,
                priority,
                flags,
                headers,
            } => {
                let mut b = Vec::new();
                b.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                b.extend_from_slice(&(associated & 0x7fff_ffff).to_be_bytes());
                b.push((priority & 0x7) << 5);
                b.push(0);
                b.extend(self.compress(headers)?);
                control(1, *flags, b)
            }
            Frame::SynReply {
                stream,
                flags,
                headers,
            } => {
                let mut b = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend(self.compress(headers)?);
                control(2, *flags, b)
            }
            Frame::RstStream { stream, status } => {
                let mut b = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&status.to_be_bytes());
                control(3, 0, b)
            }
            Frame::Settings { flags, entries } => {
                let mut b = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, id, v) in entries {
                    b.push(*f);
                    b.extend_from_slice(&id.to_be_bytes()[1..]);
                    b.extend_from_slice(&v.to_be_bytes());
                }
                control(4, *flags, b)
            }
            Frame::Ping { id } => control(6, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway { last_good, status } => {
                let mut b = (last_good & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&status.to_be_bytes());
                control(7, 0, b)
            }
            Frame::Headers {
                stream,
                flags,
                headers,
            } => {
                let mut b = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend(self.compress(headers)?);
                control(8, *flags, b)
            }
            Frame::WindowUpdate { stream, delta } => {
                let mut b = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                control(9, 0, b)
            }
            Frame::Unknown { kind } => Err(format!("no encoding for frame type {kind}")),
        }
    }

    /// Decodes one frame from the front of `buf`: the frame and the bytes it
    /// took, `Ok(None)` while only part of one has arrived.
    pub(crate) fn decode(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let flags = buf[4];
        let body = &buf[8..8 + len];
        let used = 8 + len;
        if buf[0] & 0x80 == 0 {
            let stream = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            return Ok(Some((
                Frame::Data {
                    stream,
                    flags,
                    data: body.to_vec(),
                },
                used,
            )));
        }
        let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
        if version != VERSION {
            return Err(format!("SPDY version {version}; only 3"));
        }
        let kind = u16::from_be_bytes([buf[2], buf[3]]);
        let stream = || be32(body, 0).map(|s| s & 0x7fff_ffff);
        let frame = match kind {
            1 => {
                if body.len() < 10 {
                    return Err("SYN_STREAM too short".into());
                }
                Frame::SynStream {
                    stream: stream()?,
                    associated: be32(body, 4)? & 0x7fff_ffff,
                    priority: body[8] >> 5,
                    flags,
                    headers: self.decompress(&body[10..])?,
                }
            }
            2 => Frame::SynReply {
                stream: stream()?,
                flags,
                headers: self.decompress(body.get(4..).unwrap_or_default())?,
            },
            3 => Frame::RstStream {
                stream: stream()?,
                status: be32(body, 4)?,
            },
            4 => {
                let n = be32(body, 0)? as usize;
                if body.len() != 4 + n * 8 {
                    return Err("SETTINGS of the wrong length".into());
                }
                let entries = (0..n)
                    .map(|i| {
                        let e = &body[4 + i * 8..12 + i * 8];
                        (
                            e[0],
                            u32::from_be_bytes([0, e[1], e[2], e[3]]),
                            u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
                        )
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            6 => Frame::Ping { id: be32(body, 0)? },
            7 => Frame::GoAway {
                last_good: stream()?,
                status: be32(body, 4).unwrap_or(0),
            },
            8 => Frame::Headers {
                stream: stream()?,
                flags,
                headers: self.decompress(body.get(4..).unwrap_or_default())?,
            },
            9 => Frame::WindowUpdate {
                stream: stream()?,
                delta: be32(body, 4)? & 0x7fff_ffff,
            },
            k => Frame::Unknown { kind: k },
        };
        Ok(Some((frame, used)))
    }
}

/// An uncompressed header block: a count, then length-prefixed names and
/// (NUL-separated) values.
fn parse_block(b: &[u8]) -> Result<Headers, String> {
    let n = be32(b, 0)? as usize;
    if n > 1024 {
        return Err(format!("{n} headers"));
    }
    let mut at = 4;
    let mut h = Headers::new();
    let take = |at: &mut usize| -> Result<String, String> {
        let len = be32(b, *at)? as usize;
        let s = b
            .get(*at + 4..*at + 4 + len)
            .ok_or("header block too short")?;
        *at += 4 + len;
        String::from_utf8(s.to_vec()).map_err(|_| "a header that is not UTF-8".to_string())
    };
    for _ in 0..n {
        let k = take(&mut at)?;
        let v = take(&mut at)?;
        if k.is_empty() || k.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("header name {k:?}: empty or not lowercase"));
        }
        h.entry(k)
            .or_default()
            .extend(v.split('\0').map(str::to_string));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.entry(k.to_string()).or_default().push(v.to_string());
        }
        h
    }

    #[test]
    fn the_dictionary_has_the_specs_size() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\0\0\0\x07options"));
        assert!(d.ends_with(b"enq=0."));
    }

    #[test]
    fn frames_round_trip_through_two_sessions() {
        let (mut a, mut b) = (Codec::new().unwrap(), Codec::new().unwrap());
        let frames = [
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 2,
                flags: 0,
                headers: hdrs(&[("streamtype", "stdout"), ("port", "80")]),
            },
            Frame::SynStream {
                stream: 3,
                associated: 0,
                priority: 0,
                flags: FLAG_FIN,
                headers: hdrs(&[("streamtype", "error")]),
            },
            Frame::SynReply {
                stream: 1,
                flags: 0,
                headers: hdrs(&[("x", "1"), ("x", "2")]),
            },
            Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
            Frame::RstStream {
                stream: 3,
                status: 5,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536)],
            },
            Frame::Ping { id: 9 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::WindowUpdate {
                stream: 1,
                delta: 4096,
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(a.encode(f).unwrap());
        }
        let mut got = Vec::new();
        let mut at = 0;
        // Fed a byte at a time at first: partial frames wait for more.
        assert_eq!(b.decode(&wire[..7]).unwrap(), None);
        while let Some((f, used)) = b.decode(&wire[at..]).unwrap() {
            got.push(f);
            at += used;
        }
        assert_eq!(got, frames);
        assert_eq!(at, wire.len());
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut c = Codec::new().unwrap();
        // Version 2.
        assert!(c.decode(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]).is_err());
        // A SYN_STREAM whose header block is not zlib.
        let mut f = vec![0x80, 3, 0, 1, 0, 0, 0, 14];
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        assert!(c.decode(&f).is_err());
        // An unknown control type is passed on, not an error.
        assert_eq!(
            c.decode(&[0x80, 3, 0, 42, 0, 0, 0, 0]).unwrap(),
            Some((Frame::Unknown { kind: 42 }, 8))
        );
    }
}
