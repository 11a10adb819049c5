//! cgroup v1: the effective state written to `devices.allow` and `devices.deny`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceCgroup;

use super::emulator::State;
use super::rule::{Access, Device, Kind, Rule, Target};
use crate::error::io_err;
use crate::{Error, Result};

/// The two files rules are written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuleFile {
    /// `devices.allow`.
    Allow,
    /// `devices.deny`.
    Deny,
}

impl RuleFile {
    /// The file's name in the cgroup dir.
    pub(crate) fn name(self) -> &'static str {
        match self {
            RuleFile::Allow => "devices.allow",
            RuleFile::Deny => "devices.deny",
        }
    }

    fn of(allow: bool) -> RuleFile {
        if allow {
            RuleFile::Allow
        } else {
            RuleFile::Deny
        }
    }
}

/// One line for one `write(2)`: the kernel takes a single rule per write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleWrite {
    /// Where it goes.
    pub(crate) file: RuleFile,
    /// `a *:* rwm`, `c 1:3 rw`, …
    pub(crate) line: String,
}

impl RuleWrite {
    fn reset(allow: bool) -> RuleWrite {
        RuleWrite {
            file: RuleFile::of(allow),
            line: "a *:* rwm".to_owned(),
        }
    }

    fn exception(allow: bool, device: Device, access: Access) -> RuleWrite {
        RuleWrite {
            file: RuleFile::of(allow),
            line: format!("{device} {access}"),
        }
    }
}

/// What a cgroup's `devices.list` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Listed {
    /// No `devices.list`: not a v1 devices cgroup (or a test's plain dir).
    Missing,
    /// Default allow. The kernel then lists only `a *:* rwm`, never the deny exceptions.
    AllowMode,
    /// Default deny, with every exception listed.
    DenyMode(State),
}

/// Brings the v1 devices cgroup at `dir` to the effective state of `rules`.
///
/// As runc does: when the cgroup already denies by default and so will the
/// target, only the difference is written (exceptions dropped first, then new
/// ones), so running processes never lose a device they keep; otherwise `a` is
/// written first to reset the default and every exception follows. Afterwards
/// `devices.list` is read back and must show the target (for an allow default,
/// only the mode can be seen). A dir without `devices.list` gets the full
/// reset-and-rules sequence and no check.
pub(crate) fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let target = State::from_rules(rules)?;
    let before = read_list(dir)?;
    let current = match &before {
        Listed::DenyMode(s) => Some(s),
        Listed::Missing | Listed::AllowMode => None,
    };
    write_rules(dir, &transition(current, &target))?;
    if before != Listed::Missing {
        verify(dir, &target)?;
    }
    Ok(())
}

/// The writes that take a cgroup from `current` (`None`: unknown, or a default
/// allow whose exceptions cannot be listed) to `target`, in order.
pub(crate) fn transition(current: Option<&State>, target: &State) -> Vec<RuleWrite> {
    let mut writes = Vec::new();
    let deny_all = State::deny_all();
    let old = match current {
        Some(c) if !c.default_allow() && !target.default_allow() => c,
        _ => {
            writes.push(RuleWrite::reset(target.default_allow()));
            &deny_all
        }
    };
    // An exception of `old` is an allow, as the target's are when incremental.
    for (device, held) in old.exceptions() {
        let dropped = held.minus(target.exception(&device));
        if !dropped.is_empty() {
            writes.push(RuleWrite::exception(false, device, dropped));
        }
    }
    for (device, wanted) in target.exceptions() {
        let gained = wanted.minus(old.exception(&device));
        if !gained.is_empty() {
            writes.push(RuleWrite::exception(
                !target.default_allow(),
                device,
                gained,
            ));
        }
    }
    writes
}

/// Writes each line with its own `write(2)`, opening each file once. The files
/// are neither created nor truncated: they are the kernel's.
fn write_rules(dir: &Path, writes: &[RuleWrite]) -> Result<()> {
    let mut allow = None;
    let mut deny = None;
    for w in writes {
        let slot = match w.file {
            RuleFile::Allow => &mut allow,
            RuleFile::Deny => &mut deny,
        };
        let path = dir.join(w.file.name());
        let file = match slot {
            Some(f) => f,
            None => slot.insert(open_rule_file(&path)?),
        };
        write_line(file, &w.line).map_err(io_err("writing a device rule to", path))?;
    }
    Ok(())
}

fn open_rule_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("opening", path))
}

/// One write, the rule named in the error since the kernel's EINVAL or EPERM does not say which.
fn write_line(file: &mut File, line: &str) -> io::Result<()> {
    file.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("rule {line:?}: {e}")))
}

/// Reads and parses `dir/devices.list`.
pub(crate) fn read_list(dir: &Path) -> Result<Listed> {
    let path = dir.join("devices.list");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Listed::Missing),
        Err(e) => return Err(io_err("reading", path)(e)),
    };
    parse_list(&text)
        .ok_or_else(|| unexpected(path, "parsing", format!("not a devices list: {text:?}")))
}

/// Parses the kernel's `devices.list`; `None` if a line is not `T M:m ACC`.
pub(crate) fn parse_list(text: &str) -> Option<Listed> {
    let mut state = State::deny_all();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_line(line)? {
            Target::All => return Some(Listed::AllowMode),
            target => state
                .apply(Rule {
                    allow: true,
                    target,
                    access: parse_access(line)?,
                })
                .ok()?,
        }
    }
    Some(Listed::DenyMode(state))
}

fn parse_line(line: &str) -> Option<Target> {
    let mut words = line.split_whitespace();
    let kind = match words.next()? {
        "a" => return Some(Target::All),
        "b" => Kind::Block,
        "c" => Kind::Char,
        _ => return None,
    };
    let (major, minor) = words.next()?.split_once(':')?;
    Some(Target::Devices(Device {
        kind,
        major: parse_number(major)?,
        minor: parse_number(minor)?,
    }))
}

fn parse_number(s: &str) -> Option<Option<u32>> {
    match s {
        "*" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

fn parse_access(line: &str) -> Option<Access> {
    Access::parse(line.split_whitespace().nth(2)?)
}

/// The kernel's list must now show the target, as far as it shows anything.
fn verify(dir: &Path, target: &State) -> Result<()> {
    let after = read_list(dir)?;
    let ok = match &after {
        Listed::AllowMode => target.default_allow(),
        Listed::DenyMode(s) => s == target,
        Listed::Missing => false,
    };
    if ok {
        return Ok(());
    }
    Err(unexpected(
        dir.join("devices.list"),
        "checking the applied device rules in",
        format!("the cgroup shows {after:?}, not {target:?}"),
    ))
}

fn unexpected(path: PathBuf, operation: &'static str, what: String) -> Error {
    Error::Io {
        operation,
        path,
        source: io::Error::new(io::ErrorKind::InvalidData, what),
    }
}

#[cfg(test)]
mod tests {
    use super::super::emulator::tests::{spec, state};
    use super::super::rule;
    use super::super::testutil::{Rng, inputs, random_rules};
    use super::*;

    /// The v1 controller as security/device_cgroup.c implements it: exceptions
    /// keyed exactly, merged when added, subtracted exactly when removed, `a`
    /// resetting; an access allowed by one whole matching exception (deny
    /// default) or denied by any overlapping one (allow default).
    struct Kernel {
        allow: bool,
        exceptions: Vec<(Device, Access)>,
    }

    impl Kernel {
        fn from(state: &State) -> Kernel {
            Kernel {
                allow: state.default_allow(),
                exceptions: state.exceptions().collect(),
            }
        }

        fn write(&mut self, w: &RuleWrite) {
            let allow_file = w.file == RuleFile::Allow;
            let Target::Devices(d) = parse_line(&w.line).expect("line") else {
                self.allow = allow_file;
                self.exceptions.clear();
                return;
            };
            let access = parse_access(&w.line).expect("access");
            let at = self.exceptions.iter().position(|(e, _)| *e == d);
            match at {
                Some(i) if allow_file != self.allow => {
                    self.exceptions[i].1 = self.exceptions[i].1.union(access)
                }
                None if allow_file != self.allow => self.exceptions.push((d, access)),
                Some(i) => {
                    self.exceptions[i].1 = self.exceptions[i].1.minus(access);
                    if self.exceptions[i].1.is_empty() {
                        self.exceptions.remove(i);
                    }
                }
                None => {}
            }
        }

        fn allows(&self, kind: Kind, major: u32, minor: u32, access: Access) -> bool {
            let matching = || {
                self.exceptions
                    .iter()
                    .filter(|(d, _)| d.matches(kind, major, minor))
            };
            if self.allow {
                matching().all(|(_, a)| a.bits() & access.bits() == 0)
            } else {
                matching().any(|(_, a)| access.bits() & !a.bits() == 0)
            }
        }

        fn listed(&self) -> Listed {
            if self.allow {
                return Listed::AllowMode;
            }
            let text: String = self
                .exceptions
                .iter()
                .map(|(d, a)| format!("{d} {a}\n"))
                .collect();
            parse_list(&text).expect("list")
        }
    }

    /// The rules as the lines a caller would write to the kernel one by one.
    fn literal_writes(rules: &[LinuxDeviceCgroup]) -> Vec<RuleWrite> {
        let writes = rules.iter().enumerate().map(|(i, r)| {
            let r = rule::parse(i, r).expect("rule");
            let line = match r.target {
                Target::All => "a *:* rwm".to_owned(),
                Target::Devices(d) => format!("{d} {}", r.access),
            };
            RuleWrite {
                file: RuleFile::of(r.allow),
                line,
            }
        });
        writes.collect()
    }

    fn assert_same(kernel: &Kernel, state: &State, what: &str) {
        for (kind, major, minor, access) in inputs() {
            assert_eq!(
                kernel.allows(kind, major, minor, access),
                state.allows(kind, major, minor, access),
                "{what}: {state:?} on {kind:?} {major}:{minor} {access}"
            );
        }
    }

    #[test]
    fn the_emulator_decides_as_the_kernel() {
        // Fed literally to a fresh cgroup (which allows everything), lists that
        // start with a reset end where the emulator ends, unless it refused them.
        let mut rng = Rng::new(1);
        let mut compared = 0;
        for _ in 0..3000 {
            let mut rules = vec![spec(if rng.below(2) == 0 {
                "allow a"
            } else {
                "deny a"
            })];
            rules.extend(random_rules(&mut rng));
            let Ok(state) = State::from_rules(&rules) else {
                continue;
            };
            let mut kernel = Kernel::from(&State::allow_all());
            for w in literal_writes(&rules) {
                kernel.write(&w);
            }
            assert_same(&kernel, &state, "literal");
            compared += 1;
        }
        assert!(compared > 1000, "{compared}");
    }

    #[test]
    fn transitions_reach_the_target() {
        let mut rng = Rng::new(2);
        for _ in 0..3000 {
            let (Ok(before), Ok(target)) = (
                State::from_rules(&random_rules(&mut rng)),
                State::from_rules(&random_rules(&mut rng)),
            ) else {
                continue;
            };
            // What apply_v1 would know of `before`: all of a deny list, nothing of an allow list.
            let known = (!before.default_allow()).then_some(&before);
            let mut kernel = Kernel::from(&before);
            for w in transition(known, &target) {
                kernel.write(&w);
            }
            assert_same(&kernel, &target, "transition");
            if !target.default_allow() {
                assert_eq!(kernel.listed(), Listed::DenyMode(target.clone()));
            }
        }
    }

    fn lines(writes: &[RuleWrite]) -> Vec<String> {
        writes
            .iter()
            .map(|w| format!("{} {}", w.file.name(), w.line))
            .collect()
    }

    #[test]
    fn from_unknown_the_default_is_reset_first() {
        let target = state(&["deny a", "allow c 1:3 rwm", "allow c 1:5 r"]).expect("state");
        assert_eq!(
            lines(&transition(None, &target)),
            [
                "devices.deny a *:* rwm",
                "devices.allow c 1:3 rwm",
                "devices.allow c 1:5 r"
            ]
        );
        let target = state(&["allow a", "deny b *:* m"]).expect("state");
        assert_eq!(
            lines(&transition(None, &target)),
            ["devices.allow a *:* rwm", "devices.deny b *:* m"]
        );
    }

    #[test]
    fn deny_list_to_deny_list_writes_only_the_difference() {
        let current =
            state(&["allow c 1:3 rwm", "allow c 1:5 rw", "allow c 1:7 r"]).expect("state");
        let target = state(&["allow c 1:3 rwm", "allow c 1:5 r", "allow c 1:9 w"]).expect("state");
        assert_eq!(
            lines(&transition(Some(&current), &target)),
            [
                "devices.deny c 1:5 w",
                "devices.deny c 1:7 r",
                "devices.allow c 1:9 w"
            ]
        );
        assert!(transition(Some(&target), &target).is_empty());
    }

    #[test]
    fn a_change_of_default_resets() {
        let current = state(&["allow c 1:3 rwm"]).expect("state");
        let target = state(&["allow a", "deny c 1:5 rwm"]).expect("state");
        assert_eq!(
            lines(&transition(Some(&current), &target)),
            ["devices.allow a *:* rwm", "devices.deny c 1:5 rwm"]
        );
    }

    #[test]
    fn devices_list_parses() {
        assert_eq!(parse_list("a *:* rwm\n"), Some(Listed::AllowMode));
        assert_eq!(parse_list(""), Some(Listed::DenyMode(State::deny_all())));
        let want = state(&["allow c 1:3 rwm", "allow c 136:* rw", "allow b 8:0 m"]).expect("state");
        assert_eq!(
            parse_list("c 1:3 rwm\nc 136:* rw\nb 8:0 m\n"),
            Some(Listed::DenyMode(want))
        );
        for bad in ["x 1:3 r\n", "c 1-3 r\n", "c 1:3 q\n", "c 1:3\n", "c :3 r\n"] {
            assert_eq!(parse_list(bad), None, "{bad:?}");
        }
    }

    fn fake_cgroup(list: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["devices.allow", "devices.deny"] {
            std::fs::write(dir.path().join(f), "").expect("create");
        }
        if let Some(list) = list {
            std::fs::write(dir.path().join("devices.list"), list).expect("create");
        }
        dir
    }

    fn read(dir: &tempfile::TempDir, name: &str) -> String {
        std::fs::read_to_string(dir.path().join(name)).expect("read")
    }

    #[test]
    fn apply_writes_reset_then_exceptions() {
        let dir = fake_cgroup(None);
        let rules = [
            spec("deny a"),
            spec("allow c 1:3 rwm"),
            spec("allow c 136:* rw"),
        ];
        apply_v1(dir.path(), &rules).expect("apply");
        assert_eq!(read(&dir, "devices.deny"), "a *:* rwm\n");
        assert_eq!(read(&dir, "devices.allow"), "c 1:3 rwm\nc 136:* rw\n");

        let dir = fake_cgroup(None);
        apply_v1(dir.path(), &[spec("allow a"), spec("deny c 1:5 w")]).expect("apply");
        assert_eq!(read(&dir, "devices.allow"), "a *:* rwm\n");
        assert_eq!(read(&dir, "devices.deny"), "c 1:5 w\n");
    }

    #[test]
    fn apply_checks_the_list_afterwards() {
        // The list already matches: nothing is written, and the check passes.
        let dir = fake_cgroup(Some("c 1:3 rwm\n"));
        apply_v1(dir.path(), &[spec("allow c 1:3 rwm")]).expect("apply");
        assert_eq!(read(&dir, "devices.allow"), "");
        assert_eq!(read(&dir, "devices.deny"), "");
        // A cgroup that does not take the rules (this plain file never changes) is an error.
        let dir = fake_cgroup(Some("c 1:3 rwm\n"));
        match apply_v1(dir.path(), &[spec("allow c 1:5 rwm")]) {
            Err(Error::Io { path, source, .. }) => {
                assert_eq!(path, dir.path().join("devices.list"));
                assert_eq!(source.kind(), io::ErrorKind::InvalidData);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(read(&dir, "devices.deny"), "c 1:3 rwm\n");
        assert_eq!(read(&dir, "devices.allow"), "c 1:5 rwm\n");
        // An allow default can only be checked for its mode.
        let dir = fake_cgroup(Some("a *:* rwm\n"));
        apply_v1(dir.path(), &[spec("allow a"), spec("deny c 1:5 rwm")]).expect("apply");
    }

    #[test]
    fn bad_rules_write_nothing() {
        let dir = fake_cgroup(None);
        let err = apply_v1(
            dir.path(),
            &[
                spec("deny a"),
                spec("allow c 1:* rwm"),
                spec("deny c 1:3 w"),
            ],
        );
        assert!(matches!(err, Err(Error::InvalidConfig { .. })), "{err:?}");
        assert_eq!(read(&dir, "devices.deny"), "");
        assert_eq!(read(&dir, "devices.allow"), "");
    }

    #[test]
    fn a_missing_rule_file_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        match apply_v1(dir.path(), &[spec("deny a")]) {
            Err(Error::Io { path, .. }) => assert_eq!(path, dir.path().join("devices.deny")),
            other => panic!("{other:?}"),
        }
    }
}
