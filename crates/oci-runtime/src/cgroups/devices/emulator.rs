//! The effective state an ordered rule list leads to, as the v1 kernel controller
//! (and runc's emulator of it) computes it.

use std::collections::BTreeMap;
use std::fmt;

use oci_spec::runtime::LinuxDeviceCgroup;

#[cfg(test)]
use super::rule::Kind;
use super::rule::{self, Access, Device, Rule, Target};
use crate::Result;
use crate::error::invalid;

/// A default (allow all or deny all) and the exceptions to it.
///
/// With a deny default, an access is allowed when one exception matching the
/// device holds every requested access; with an allow default, it is denied when
/// any exception matching the device holds one of them. These are the kernel's v1
/// rules (`match_exception` and `match_exception_partial`), which the v2 program
/// implements too. Exceptions are keyed by their exact type, major and minor, and
/// kept sorted by them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct State {
    default_allow: bool,
    exceptions: BTreeMap<Device, Access>,
}

/// A rule the kernel's v1 controller would silently ignore: it takes away part of
/// a wider exception, which v1 can only remove whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hole {
    /// The rule's devices.
    pub(crate) device: Device,
    /// The rule's accesses.
    pub(crate) access: Access,
    /// The wider exception it would cut into.
    pub(crate) wider: Device,
    /// That exception's accesses.
    pub(crate) wider_access: Access,
    /// Whether the rule is an allow (an exception in a deny list) or a deny.
    pub(crate) allow: bool,
}

impl fmt::Display for Hole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, earlier) = if self.allow {
            ("allow", "denies")
        } else {
            ("deny", "allows")
        };
        write!(
            f,
            "cannot {verb} {} {}: the earlier rule {} {} {earlier} it, and cgroup v1 \
             cannot punch a hole in a wildcard rule; change the wider rule instead",
            self.device, self.access, self.wider, self.wider_access
        )
    }
}

impl State {
    /// Every device allowed, no exceptions.
    pub(crate) fn allow_all() -> State {
        State {
            default_allow: true,
            exceptions: BTreeMap::new(),
        }
    }

    /// Every device denied, no exceptions.
    pub(crate) fn deny_all() -> State {
        State {
            default_allow: false,
            exceptions: BTreeMap::new(),
        }
    }

    /// Applies `linux.resources.devices` in order, starting from deny-all as runc
    /// does (so an empty list denies every device).
    ///
    /// Errors name the entry: bad input, or a rule that cuts into a wider one ([`Hole`]).
    pub(crate) fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<State> {
        let mut state = State::deny_all();
        for (index, spec) in rules.iter().enumerate() {
            let rule = rule::parse(index, spec)?;
            state.apply(rule).map_err(|hole| {
                invalid(
                    format!("linux.resources.devices[{index}]"),
                    hole.to_string(),
                )
            })?;
        }
        Ok(state)
    }

    /// Applies one rule, as the kernel applies one line written to
    /// `devices.allow` or `devices.deny`, except that cutting into a wider
    /// exception is an error rather than silently ignored.
    pub(crate) fn apply(&mut self, rule: Rule) -> Result<(), Hole> {
        match rule.target {
            Target::All if rule.allow => *self = State::allow_all(),
            Target::All => *self = State::deny_all(),
            Target::Devices(d) if rule.allow == self.default_allow => {
                self.remove(d, rule.access, rule.allow)?
            }
            Target::Devices(d) => self.add(d, rule.access),
        }
        Ok(())
    }

    /// Whether the default is to allow.
    pub(crate) fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// The exceptions to the default, sorted by device.
    pub(crate) fn exceptions(&self) -> impl Iterator<Item = (Device, Access)> + '_ {
        self.exceptions.iter().map(|(d, a)| (*d, *a))
    }

    /// The accesses the exception keyed exactly by `device` holds.
    pub(crate) fn exception(&self, device: &Device) -> Access {
        self.exceptions.get(device).copied().unwrap_or_default()
    }

    /// Whether opening (`r`, `w`) or creating (`m`) the device node
    /// `kind major:minor` with these accesses is allowed.
    #[cfg(test)]
    pub(crate) fn allows(&self, kind: Kind, major: u32, minor: u32, access: Access) -> bool {
        let mut matching = self
            .exceptions()
            .filter(|(d, _)| d.matches(kind, major, minor));
        if self.default_allow {
            !matching.any(|(_, held)| held.intersects(access))
        } else {
            matching.any(|(_, held)| held.contains(access))
        }
    }

    /// Adds an exception, merging with one on the same devices as the kernel does.
    fn add(&mut self, device: Device, access: Access) {
        let held = self.exceptions.entry(device).or_default();
        *held = held.union(access);
    }

    /// Takes accesses away from the exception on exactly these devices.
    fn remove(&mut self, device: Device, access: Access, allow: bool) -> Result<(), Hole> {
        self.check_hole(device, access, allow)?;
        let left = self.exception(&device).minus(access);
        if left.is_empty() {
            self.exceptions.remove(&device);
        } else {
            self.exceptions.insert(device, left);
        }
        Ok(())
    }

    /// The wider exceptions v1 would leave untouched while the rule meant to cut into them.
    fn check_hole(&self, device: Device, access: Access, allow: bool) -> Result<(), Hole> {
        let wider = [
            Device {
                major: None,
                ..device
            },
            Device {
                minor: None,
                ..device
            },
            Device {
                major: None,
                minor: None,
                ..device
            },
        ];
        for w in wider.into_iter().filter(|w| *w != device) {
            let held = self.exception(&w);
            if held.intersects(access) {
                return Err(Hole {
                    device,
                    access,
                    wider: w,
                    wider_access: held,
                    allow,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use oci_spec::runtime::LinuxDeviceType;

    use super::*;

    /// A spec rule from a v1-style line: `"allow c 1:3 rw"`, `"deny a"`.
    pub(crate) fn spec(line: &str) -> LinuxDeviceCgroup {
        let mut words = line.split_whitespace();
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(words.next() == Some("allow"));
        let typ = match words.next() {
            Some("b") => LinuxDeviceType::B,
            Some("c") => LinuxDeviceType::C,
            _ => LinuxDeviceType::A,
        };
        r.set_typ(Some(typ));
        let (major, minor) = words
            .next()
            .and_then(|n| n.split_once(':'))
            .unwrap_or(("*", "*"));
        r.set_major(major.parse().ok());
        r.set_minor(minor.parse().ok());
        r.set_access(Some(words.next().unwrap_or("rwm").to_owned()));
        r
    }

    pub(crate) fn state(lines: &[&str]) -> Result<State> {
        State::from_rules(&lines.iter().map(|l| spec(l)).collect::<Vec<_>>())
    }

    fn exceptions(s: &State) -> Vec<String> {
        s.exceptions().map(|(d, a)| format!("{d} {a}")).collect()
    }

    const C: Kind = Kind::Char;
    const B: Kind = Kind::Block;
    const R: Access = Access::READ;
    const W: Access = Access::WRITE;
    const M: Access = Access::MKNOD;
    const RW: Access = Access::from_bits(6);

    #[test]
    fn empty_list_denies_everything() {
        let s = state(&[]).expect("state");
        assert_eq!(s, State::deny_all());
        assert!(!s.allows(C, 1, 3, R));
    }

    #[test]
    fn deny_all_then_allow_some() {
        let s = state(&[
            "deny a",
            "allow c 1:3 rwm",
            "allow c 136:* rw",
            "allow b 8:0 r",
        ])
        .expect("state");
        assert!(!s.default_allow());
        assert_eq!(exceptions(&s), ["b 8:0 r", "c 1:3 rwm", "c 136:* rw"]);
        assert!(s.allows(C, 1, 3, Access::ALL));
        assert!(!s.allows(C, 1, 5, R));
        assert!(s.allows(C, 136, 9, RW));
        assert!(!s.allows(C, 136, 9, M));
        assert!(s.allows(B, 8, 0, R));
        assert!(!s.allows(B, 8, 0, W));
        assert!(
            !s.allows(C, 8, 0, R),
            "block rules say nothing of char devices"
        );
    }

    #[test]
    fn allow_all_then_deny_some() {
        let s =
            state(&["allow a", "deny c 1:5 rwm", "deny b *:* m", "deny c 4:* w"]).expect("state");
        assert!(s.default_allow());
        assert!(s.allows(C, 1, 3, Access::ALL));
        assert!(!s.allows(C, 1, 5, R));
        assert!(!s.allows(B, 8, 0, M));
        assert!(s.allows(B, 8, 0, RW));
        assert!(s.allows(C, 4, 1, R));
        assert!(!s.allows(C, 4, 1, RW), "a deny of w also denies rw");
    }

    #[test]
    fn a_later_reset_drops_earlier_exceptions() {
        let s = state(&[
            "allow c 1:3 rwm",
            "allow a",
            "deny c 1:5 rwm",
            "deny a",
            "allow c 1:9 r",
        ])
        .expect("state");
        assert_eq!(exceptions(&s), ["c 1:9 r"]);
        assert!(!s.allows(C, 1, 3, R));
    }

    #[test]
    fn access_subsets_are_subtracted() {
        let s = state(&["deny a", "allow c 1:3 rw", "deny c 1:3 w"]).expect("state");
        assert_eq!(exceptions(&s), ["c 1:3 r"]);
        assert!(s.allows(C, 1, 3, R));
        assert!(!s.allows(C, 1, 3, W));
        assert!(!s.allows(C, 1, 3, RW));
        let s =
            state(&["deny a", "allow c 1:3 r", "allow c 1:3 w", "deny c 1:3 rwm"]).expect("state");
        assert_eq!(exceptions(&s), Vec::<String>::new());
    }

    #[test]
    fn one_exception_must_hold_every_requested_access() {
        // As in v1: r from one exception and w from another do not make rw.
        let s = state(&["deny a", "allow c 1:* r", "allow c 1:3 w"]).expect("state");
        assert!(s.allows(C, 1, 3, R));
        assert!(s.allows(C, 1, 3, W));
        assert!(!s.allows(C, 1, 3, RW));
    }

    #[test]
    fn overlapping_wildcards_add_up() {
        let s = state(&[
            "deny a",
            "allow c *:* m",
            "allow c 1:* r",
            "allow c *:3 w",
            "allow c 1:3 rwm",
        ])
        .expect("state");
        assert!(s.allows(C, 9, 9, M));
        assert!(!s.allows(C, 9, 9, R));
        assert!(s.allows(C, 1, 7, R));
        assert!(s.allows(C, 2, 3, W));
        assert!(!s.allows(C, 2, 3, RW));
        assert!(s.allows(C, 1, 3, Access::ALL));
        // Denying a narrower rule removes only that exact exception: the wildcards stay.
        let s =
            state(&["deny a", "allow c 1:* r", "allow c 1:3 rw", "deny c 1:3 w"]).expect("state");
        assert_eq!(exceptions(&s), ["c 1:* r", "c 1:3 r"]);
    }

    #[test]
    fn a_wider_deny_leaves_narrower_exceptions() {
        // The kernel and runc remove only the exception on exactly c 1:*.
        let s = state(&[
            "deny a",
            "allow c 1:3 rwm",
            "allow c 1:* r",
            "deny c 1:* rwm",
        ])
        .expect("state");
        assert_eq!(exceptions(&s), ["c 1:3 rwm"]);
    }

    #[test]
    fn punching_a_hole_in_a_wildcard_is_refused() {
        for (lines, index) in [
            (&["deny a", "allow c 1:* rw", "deny c 1:3 w"][..], 2),
            (&["deny a", "allow c *:3 r", "deny c 1:3 rw"][..], 2),
            (
                &["deny a", "allow c *:* m", "allow b 8:0 r", "deny c 4:4 m"][..],
                3,
            ),
            (&["allow a", "deny b 8:* w", "allow b 8:1 rw"][..], 2),
        ] {
            match state(lines) {
                Err(crate::Error::InvalidConfig { field, reason }) => {
                    assert_eq!(field, format!("linux.resources.devices[{index}]"));
                    assert!(reason.contains("punch a hole"), "{reason}");
                }
                other => panic!("{lines:?}: {other:?}"),
            }
        }
        // Disjoint accesses do not overlap the wildcard, so they are fine.
        let s =
            state(&["deny a", "allow c 1:* r", "allow c 1:3 w", "deny c 1:3 w"]).expect("state");
        assert_eq!(exceptions(&s), ["c 1:* r"]);
        // Nor does the other device type.
        state(&["deny a", "allow b 1:* r", "deny c 1:3 r"]).expect("state");
    }

    #[test]
    fn removing_what_is_not_there_is_a_no_op() {
        let s =
            state(&["deny a", "deny c 1:3 rwm", "allow c 1:5 r", "deny c 1:5 w"]).expect("state");
        assert_eq!(exceptions(&s), ["c 1:5 r"]);
        let s = state(&["allow a", "allow c 1:3 rwm"]).expect("state");
        assert_eq!(s, State::allow_all());
    }

    #[test]
    fn no_access_is_allowed_by_any_match_and_denied_by_none() {
        // The kernel may ask with no access bit (e.g. an exec-only permission check).
        let s = state(&["deny a", "allow c 1:3 r"]).expect("state");
        assert!(s.allows(C, 1, 3, Access::NONE));
        assert!(!s.allows(C, 1, 4, Access::NONE));
        let s = state(&["allow a", "deny c 1:3 rwm"]).expect("state");
        assert!(s.allows(C, 1, 3, Access::NONE));
    }
}
