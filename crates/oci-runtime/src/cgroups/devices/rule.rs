//! One `linux.resources.devices` entry, checked and put in the kernel's terms.

use std::fmt;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::Result;
use crate::error::invalid;

/// A device type an exception can name: the kernel checks block and char devices only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// `b`.
    Block,
    /// `c`.
    Char,
}

impl Kind {
    /// The letter the v1 files use.
    pub(crate) fn letter(self) -> char {
        match self {
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }

    /// The `BPF_DEVCG_DEV_*` value in the low half of `bpf_cgroup_dev_ctx.access_type`.
    pub(crate) fn bpf_type(self) -> u32 {
        match self {
            Kind::Block => 1,
            Kind::Char => 2,
        }
    }
}

/// A set of accesses to a device. The bits are the kernel's `BPF_DEVCG_ACC_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Access(u8);

impl Access {
    /// No access.
    pub(crate) const NONE: Access = Access(0);
    /// `m`: create the device node.
    pub(crate) const MKNOD: Access = Access(1);
    /// `r`.
    pub(crate) const READ: Access = Access(2);
    /// `w`.
    pub(crate) const WRITE: Access = Access(4);
    /// `rwm`.
    pub(crate) const ALL: Access = Access(7);

    /// The set with these `BPF_DEVCG_ACC_*` bits; unknown bits are dropped.
    #[cfg(test)]
    pub(crate) const fn from_bits(bits: u8) -> Access {
        Access(bits & Access::ALL.0)
    }

    /// The `BPF_DEVCG_ACC_*` bits.
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    /// Accesses in either set.
    pub(crate) fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    /// Accesses in `self` but not in `other`.
    pub(crate) fn minus(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    /// Whether the two sets share an access.
    pub(crate) fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether every access of `other` is in `self`.
    pub(crate) fn contains(self, other: Access) -> bool {
        other.minus(self).is_empty()
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses letters of `rwm` in any order (repeats allowed, as the kernel allows them);
    /// `None` on any other letter.
    pub(crate) fn parse(letters: &str) -> Option<Access> {
        letters.chars().try_fold(Access::NONE, |acc, c| {
            let one = match c {
                'r' => Access::READ,
                'w' => Access::WRITE,
                'm' => Access::MKNOD,
                _ => return None,
            };
            Some(acc.union(one))
        })
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, letter) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.contains(bit) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// The devices an exception covers: a type, and a major and minor where `None` is `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Device {
    /// Block or char.
    pub(crate) kind: Kind,
    /// The major number, `None` for any.
    pub(crate) major: Option<u32>,
    /// The minor number, `None` for any.
    pub(crate) minor: Option<u32>,
}

impl Device {
    /// Whether the device node `kind major:minor` is one of these devices.
    #[cfg(test)]
    pub(crate) fn matches(&self, kind: Kind, major: u32, minor: u32) -> bool {
        self.kind == kind
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

impl fmt::Display for Device {
    /// As the v1 files spell it: `c 1:3`, `b 8:*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.kind.letter())?;
        number(f, self.major)?;
        write!(f, ":")?;
        number(f, self.minor)
    }
}

fn number(f: &mut fmt::Formatter<'_>, n: Option<u32>) -> fmt::Result {
    match n {
        Some(n) => write!(f, "{n}"),
        None => write!(f, "*"),
    }
}

/// What a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Type `a`: every device. Such a rule resets the default and drops all exceptions.
    All,
    /// Some block or char devices.
    Devices(Device),
}

/// One checked rule of `linux.resources.devices`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Allow (`true`) or deny.
    pub(crate) allow: bool,
    /// The devices it names.
    pub(crate) target: Target,
    /// The accesses it allows or denies.
    pub(crate) access: Access,
}

/// Checks entry `index` of `linux.resources.devices`.
///
/// As runc does, an unset type is `a`, an unset major or minor (or `-1`, runc's
/// spelling of it) is `*`, and an empty access is refused. Type `u` and `p` are
/// refused: the spec allows only `a`, `b` and `c` here.
pub(crate) fn parse(index: usize, rule: &LinuxDeviceCgroup) -> Result<Rule> {
    let access = access(index, rule.access().as_deref())?;
    let major = device_number(index, "major", rule.major())?;
    let minor = device_number(index, "minor", rule.minor())?;
    let target = match kind(index, rule.typ())? {
        Some(kind) => Target::Devices(Device { kind, major, minor }),
        None => Target::All,
    };
    let rule = Rule {
        allow: rule.allow(),
        target,
        access,
    };
    check_allow_all(index, rule, major, minor)?;
    Ok(rule)
}

fn field(index: usize, name: &str) -> String {
    format!("linux.resources.devices[{index}].{name}")
}

fn access(index: usize, letters: Option<&str>) -> Result<Access> {
    let letters = letters.unwrap_or_default();
    match Access::parse(letters) {
        Some(a) if !a.is_empty() => Ok(a),
        Some(_) => Err(invalid(
            field(index, "access"),
            "empty: give a combination of r, w and m",
        )),
        None => Err(invalid(
            field(index, "access"),
            format!("{letters:?} holds a letter other than r, w and m"),
        )),
    }
}

fn device_number(index: usize, name: &str, value: Option<i64>) -> Result<Option<u32>> {
    match value {
        None | Some(-1) => Ok(None),
        // u32::MAX is the kernel's own `*`: a rule naming it would mean any device in v1.
        Some(n) => match u32::try_from(n) {
            Ok(n) if n != u32::MAX => Ok(Some(n)),
            _ => Err(invalid(
                field(index, name),
                format!("{n} is not a device number (0 to 4294967294, or unset for any)"),
            )),
        },
    }
}

fn kind(index: usize, typ: Option<LinuxDeviceType>) -> Result<Option<Kind>> {
    match typ {
        None | Some(LinuxDeviceType::A) => Ok(None),
        Some(LinuxDeviceType::B) => Ok(Some(Kind::Block)),
        Some(LinuxDeviceType::C) => Ok(Some(Kind::Char)),
        Some(other) => Err(invalid(
            field(index, "type"),
            format!("{:?} is not one of a, b, c", other.as_str()),
        )),
    }
}

/// The kernel (and runc) read any `a` rule as "every device, every access", whatever
/// its numbers and letters. For a deny that is only stricter than meant; an allow
/// that names a major, a minor or fewer accesses would open every device, so it is refused.
fn check_allow_all(index: usize, rule: Rule, major: Option<u32>, minor: Option<u32>) -> Result<()> {
    let narrowed = major.is_some() || minor.is_some() || rule.access != Access::ALL;
    if rule.allow && rule.target == Target::All && narrowed {
        return Err(invalid(
            format!("linux.resources.devices[{index}]"),
            "an allow rule of type a always allows every device with rwm; \
             leave major and minor unset with access rwm, or use type b or c",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        allow: bool,
        typ: Option<&str>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ.map(|t| match t {
            "a" => LinuxDeviceType::A,
            "b" => LinuxDeviceType::B,
            "c" => LinuxDeviceType::C,
            "u" => LinuxDeviceType::U,
            _ => LinuxDeviceType::P,
        }));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(access.map(str::to_owned));
        r
    }

    fn field_of(err: crate::Error) -> String {
        match err {
            crate::Error::InvalidConfig { field, .. } => field,
            other => panic!("not InvalidConfig: {other:?}"),
        }
    }

    #[test]
    fn access_letters_in_any_order() {
        assert_eq!(Access::parse("mwr"), Some(Access::ALL));
        assert_eq!(Access::parse("rr"), Some(Access::READ));
        assert_eq!(Access::parse("rx"), None);
        assert_eq!(Access::ALL.to_string(), "rwm");
        assert_eq!(Access::MKNOD.union(Access::READ).to_string(), "rm");
        assert!(Access::ALL.contains(Access::WRITE));
        assert!(!Access::READ.contains(Access::ALL));
        assert!(Access::READ.contains(Access::NONE));
    }

    #[test]
    fn unset_fields_are_wildcards() {
        let r = parse(0, &spec(false, None, None, None, Some("rwm"))).expect("rule");
        assert_eq!(r.target, Target::All);
        let r = parse(0, &spec(true, Some("c"), Some(1), Some(-1), Some("rw"))).expect("rule");
        let d = Device {
            kind: Kind::Char,
            major: Some(1),
            minor: None,
        };
        assert_eq!(r.target, Target::Devices(d));
        assert_eq!(d.to_string(), "c 1:*");
        assert!(d.matches(Kind::Char, 1, 77));
        assert!(!d.matches(Kind::Block, 1, 77));
        assert!(!d.matches(Kind::Char, 2, 77));
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (
                spec(true, Some("c"), Some(1), Some(3), Some("rwx")),
                "linux.resources.devices[4].access",
            ),
            (
                spec(true, Some("c"), Some(1), Some(3), Some("")),
                "linux.resources.devices[4].access",
            ),
            (
                spec(true, Some("c"), Some(1), Some(3), None),
                "linux.resources.devices[4].access",
            ),
            (
                spec(true, Some("c"), Some(-2), Some(3), Some("r")),
                "linux.resources.devices[4].major",
            ),
            (
                spec(true, Some("c"), Some(1), Some(1 << 32), Some("r")),
                "linux.resources.devices[4].minor",
            ),
            (
                spec(true, Some("c"), Some(1), Some(u32::MAX.into()), Some("r")),
                "linux.resources.devices[4].minor",
            ),
            (
                spec(true, Some("u"), Some(1), Some(3), Some("r")),
                "linux.resources.devices[4].type",
            ),
            (
                spec(true, Some("p"), Some(1), Some(3), Some("r")),
                "linux.resources.devices[4].type",
            ),
            (
                spec(true, Some("a"), Some(1), None, Some("rwm")),
                "linux.resources.devices[4]",
            ),
            (
                spec(true, None, None, None, Some("rw")),
                "linux.resources.devices[4]",
            ),
        ];
        for (rule, want) in cases {
            let err = parse(4, &rule).expect_err("refused");
            assert_eq!(field_of(err), want, "{rule:?}");
        }
    }

    #[test]
    fn a_narrowed_deny_all_still_denies_all() {
        let r = parse(0, &spec(false, Some("a"), Some(1), Some(3), Some("r"))).expect("rule");
        assert_eq!(r.target, Target::All);
        assert!(!r.allow);
    }
}
