//! An entry's metadata: header fields, overridden by PAX records.

use std::io::{self, Read};
use std::os::fd::BorrowedFd;

use rustix::fs::{Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

/// Xattrs a layer may not set: they would fake overlayfs whiteouts or
/// opaque markers in a snapshot.
const FORBIDDEN_XATTR_PREFIX: &str = "trusted.overlay.";

#[derive(Debug, Clone)]
pub(super) struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    atime: Option<Timespec>,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Self> {
        let h = entry.header();
        let mut meta = Meta {
            mode: h.mode()? & 0o7777,
            uid: to_id(h.uid()?)?,
            gid: to_id(h.gid()?)?,
            mtime: Timespec {
                tv_sec: i64::try_from(h.mtime()?).unwrap_or(i64::MAX),
                tv_nsec: 0,
            },
            atime: None,
            xattrs: Vec::new(),
        };
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                match key {
                    "mtime" => meta.mtime = parse_pax_time(value)?,
                    "atime" => meta.atime = Some(parse_pax_time(value)?),
                    "uid" => meta.uid = to_id(parse_pax_int(value)?)?,
                    "gid" => meta.gid = to_id(parse_pax_int(value)?)?,
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.")
                            && !name.starts_with(FORBIDDEN_XATTR_PREFIX)
                        {
                            meta.xattrs.push((name.to_string(), value.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    pub(super) fn mode(&self) -> Mode {
        Mode::from_raw_mode(self.mode)
    }

    pub(super) fn uid(&self) -> Uid {
        Uid::from_raw(self.uid)
    }

    pub(super) fn gid(&self) -> Gid {
        Gid::from_raw(self.gid)
    }

    pub(super) fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime.unwrap_or(self.mtime),
            last_modification: self.mtime,
        }
    }

    pub(super) fn has_xattrs(&self) -> bool {
        !self.xattrs.is_empty()
    }

    /// Sets the entry's xattrs on `fd`; a filesystem that cannot store an
    /// xattr namespace is not an error, as with GNU tar.
    pub(super) fn set_xattrs(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        for (name, value) in &self.xattrs {
            match rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) | Err(Errno::OPNOTSUPP) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn to_id(v: u64) -> io::Result<u32> {
    u32::try_from(v)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("id {v} out of range")))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad PAX {what}"))
}

fn parse_pax_int(v: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("number"))
}

/// Parses a PAX time such as `1700000000.123456789` or `-1.5`.
fn parse_pax_time(v: &[u8]) -> io::Result<Timespec> {
    let s = std::str::from_utf8(v).map_err(|_| bad("time"))?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad("time"));
    }
    let secs: i64 = secs.parse().map_err(|_| bad("time"))?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    Ok(if !neg {
        Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        }
    } else if nanos == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = parse_pax_time(b"1700000000.123456789").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 123_456_789));
        let t = parse_pax_time(b"12.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 500_000_000));
        let t = parse_pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(parse_pax_time(b"x").is_err());
        assert!(parse_pax_time(b"1.x").is_err());
    }
}
