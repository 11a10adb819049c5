//! `default_seccomp` against Docker's own profile (moby's `default.json`,
//! reference data beside the repository at `../shared/reference/`, never
//! shipped). Docker's file is resolved here the way Docker resolves it for a
//! container (its `archMap`, and `includes` / `excludes` on capabilities,
//! architectures and kernel versions), by a converter of this test's own,
//! into a plain OCI profile. Both profiles then become, per call name, the
//! set of rules (action, errno, argument conditions) that apply to it, and
//! must be equal: only the order of rules, names and conditions is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use oci_runtime::default_seccomp;
use oci_spec::runtime::{Arch, Capability, LinuxSeccomp};
use serde_json::{Value, json};

/// Every capability of Linux 6.18, in kernel order.
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `runc spec`'s capabilities.
const RUNC_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// Docker's default capabilities.
const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A fixed recent kernel for Docker's `minKernel`.
const KERNEL: (u64, u64, u64) = (6, 18, 0);

/// Docker's name for a native architecture (libseccomp's, which its rules'
/// `arches` use), by the SCMP name our function takes.
fn moby_arch_name(scmp: &str) -> &'static str {
    match scmp {
        "SCMP_ARCH_X86_64" => "amd64",
        "SCMP_ARCH_X86" => "x86",
        "SCMP_ARCH_X32" => "x32",
        "SCMP_ARCH_ARM" => "arm",
        "SCMP_ARCH_AARCH64" => "arm64",
        "SCMP_ARCH_MIPS" => "mips",
        "SCMP_ARCH_MIPSEL" => "mipsel",
        "SCMP_ARCH_MIPS64" => "mips64",
        "SCMP_ARCH_MIPS64N32" => "mips64n32",
        "SCMP_ARCH_MIPSEL64" => "mipsel64",
        "SCMP_ARCH_MIPSEL64N32" => "mipsel64n32",
        "SCMP_ARCH_PPC" => "ppc",
        "SCMP_ARCH_PPC64" => "ppc64",
        "SCMP_ARCH_PPC64LE" => "ppc64le",
        "SCMP_ARCH_S390" => "s390",
        "SCMP_ARCH_S390X" => "s390x",
        "SCMP_ARCH_PARISC" => "parisc",
        "SCMP_ARCH_PARISC64" => "parisc64",
        "SCMP_ARCH_RISCV64" => "riscv64",
        "SCMP_ARCH_LOONGARCH64" => "loong64",
        "SCMP_ARCH_M68K" => "m68k",
        "SCMP_ARCH_SH" => "sh",
        "SCMP_ARCH_SHEB" => "sheb",
        other => panic!("no Docker name for {other}"),
    }
}

/// Every architecture oci-spec names but the native placeholder.
const ARCHES: [Arch; 23] = [
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
];

fn scmp_name(arch: Arch) -> String {
    match serde_json::to_value(arch) {
        Ok(Value::String(s)) => s,
        other => panic!("{arch:?} serialises as {other:?}"),
    }
}

fn caps(names: &[&str]) -> Vec<Capability> {
    names
        .iter()
        .map(|n| serde_json::from_value(json!(n)).unwrap_or_else(|e| panic!("{n}: {e}")))
        .collect()
}

fn moby() -> Option<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/moby-seccomp-default.json");
    match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).expect("the reference profile parses")),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{}: {e}: CI must compare the default profile",
                path.display()
            )
        }
        Err(e) => {
            eprintln!("skipping: {}: {e}", path.display());
            None
        }
    }
}

/// The running kernel's version, from `/proc/sys/kernel/osrelease`.
fn running_kernel() -> (u64, u64, u64) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    parse_kernel(release.trim()).unwrap_or_else(|| panic!("kernel release {release:?}"))
}

/// `major.minor[.patch][-anything]`, as Docker parses `minKernel`.
fn parse_kernel(v: &str) -> Option<(u64, u64, u64)> {
    let numbers = v.split(['-', '+', '_']).next()?;
    let mut parts = numbers.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

fn check_keys(v: &Value, what: &str, known: &[&str]) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("{what} is not an object: {v}"));
    };
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}: unknown key {k:?}")),
        None => Ok(()),
    }
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or(format!("{what}: {s} is not a string"))
            })
            .collect(),
        Some(other) => Err(format!("{what}: {other} is not a list")),
    }
}

/// Docker's extended profile resolved for one container, as Docker does it
/// (moby `profiles/seccomp`, `setupSeccomp`): the `archMap` entry of the
/// native architecture gives `architectures`; a rule is dropped when its
/// `excludes` names the native architecture, any capability the container
/// holds, or a kernel at or below the running one, and when its `includes`
/// lists architectures without the native one, capabilities the container
/// does not all hold, or a kernel above the running one.
fn resolve_moby(
    moby: &Value,
    native: &str,
    held: &BTreeSet<String>,
    kernel: (u64, u64, u64),
) -> Result<Value, String> {
    check_keys(
        moby,
        "profile",
        &["defaultAction", "defaultErrnoRet", "archMap", "syscalls"],
    )?;
    let native_name = moby_arch_name(native);
    let mut out = serde_json::Map::new();
    out.insert("defaultAction".into(), moby["defaultAction"].clone());
    if let Some(e) = moby.get("defaultErrnoRet") {
        out.insert("defaultErrnoRet".into(), e.clone());
    }
    for entry in moby["archMap"].as_array().ok_or("archMap is not a list")? {
        check_keys(
            entry,
            "archMap entry",
            &["architecture", "subArchitectures"],
        )?;
        if entry["architecture"] == native {
            let mut arches = vec![native.to_string()];
            arches.extend(strings(entry.get("subArchitectures"), "subArchitectures")?);
            out.insert("architectures".into(), json!(arches));
            break;
        }
    }
    let min_kernel = |gate: &Value, what: &str| -> Result<Option<bool>, String> {
        match gate.get("minKernel") {
            None => Ok(None),
            Some(Value::String(v)) => parse_kernel(v)
                .map(|min| Some(kernel >= min))
                .ok_or(format!("{what}.minKernel {v:?}")),
            Some(other) => Err(format!("{what}.minKernel {other}")),
        }
    };
    let mut rules = Vec::new();
    for (i, rule) in moby["syscalls"]
        .as_array()
        .ok_or("syscalls is not a list")?
        .iter()
        .enumerate()
    {
        let what = format!("syscalls[{i}]");
        check_keys(
            rule,
            &what,
            &[
                "names", "action", "errnoRet", "args", "includes", "excludes", "comment",
            ],
        )?;
        if let Some(ex) = rule.get("excludes") {
            let what = format!("{what}.excludes");
            check_keys(ex, &what, &["arches", "caps", "minKernel"])?;
            if strings(ex.get("arches"), &what)?
                .iter()
                .any(|a| a == native_name)
                || strings(ex.get("caps"), &what)?
                    .iter()
                    .any(|c| held.contains(c))
                || min_kernel(ex, &what)? == Some(true)
            {
                continue;
            }
        }
        if let Some(inc) = rule.get("includes") {
            let what = format!("{what}.includes");
            check_keys(inc, &what, &["arches", "caps", "minKernel"])?;
            let arches = strings(inc.get("arches"), &what)?;
            if (!arches.is_empty() && !arches.iter().any(|a| a == native_name))
                || !strings(inc.get("caps"), &what)?
                    .iter()
                    .all(|c| held.contains(c))
                || min_kernel(inc, &what)? == Some(false)
            {
                continue;
            }
        }
        let mut r = serde_json::Map::new();
        for key in ["names", "action", "errnoRet", "args"] {
            if let Some(v) = rule.get(key) {
                r.insert(key.into(), v.clone());
            }
        }
        rules.push(Value::Object(r));
    }
    out.insert("syscalls".into(), Value::Array(rules));
    Ok(Value::Object(out))
}

/// One argument condition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cond {
    index: u64,
    op: String,
    value: u64,
    value_two: Option<u64>,
}

/// One rule as it applies to one call: conditions ANDed, in no order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    action: String,
    errno: Option<u64>,
    args: BTreeSet<Cond>,
}

/// What a plain OCI profile says, with order normalised away.
#[derive(Debug, PartialEq, Eq)]
struct Effective {
    default_action: String,
    default_errno: Option<u64>,
    architectures: Vec<String>,
    /// Any other top-level field (flags, listener), as it stands.
    other: BTreeMap<String, Value>,
    calls: BTreeMap<String, BTreeSet<Rule>>,
}

fn number(v: Option<&Value>, what: &str) -> Result<Option<u64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .map(Some)
            .ok_or(format!("{what}: {n} is not a number")),
    }
}

fn effective(profile: &Value) -> Result<Effective, String> {
    check_keys(
        profile,
        "profile",
        &[
            "defaultAction",
            "defaultErrnoRet",
            "architectures",
            "flags",
            "listenerPath",
            "listenerMetadata",
            "syscalls",
        ],
    )?;
    let mut architectures = strings(profile.get("architectures"), "architectures")?;
    architectures.sort();
    let other = ["flags", "listenerPath", "listenerMetadata"]
        .into_iter()
        .filter_map(|k| match profile.get(k) {
            None | Some(Value::Null) => None,
            Some(v) => Some((k.to_string(), v.clone())),
        })
        .collect();
    let mut calls: BTreeMap<String, BTreeSet<Rule>> = BTreeMap::new();
    let rules = match profile.get("syscalls") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("syscalls: {other}")),
    };
    for (i, r) in rules.iter().enumerate() {
        let what = format!("syscalls[{i}]");
        check_keys(r, &what, &["names", "action", "errnoRet", "args"])?;
        let mut args = BTreeSet::new();
        if let Some(list) = r.get("args").filter(|a| !a.is_null()) {
            for (j, a) in list
                .as_array()
                .ok_or(format!("{what}.args"))?
                .iter()
                .enumerate()
            {
                let what = format!("{what}.args[{j}]");
                check_keys(a, &what, &["index", "value", "valueTwo", "op"])?;
                args.insert(Cond {
                    index: number(a.get("index"), &what)?.ok_or(format!("{what}.index"))?,
                    op: a["op"].as_str().ok_or(format!("{what}.op"))?.to_string(),
                    value: number(a.get("value"), &what)?.ok_or(format!("{what}.value"))?,
                    value_two: number(a.get("valueTwo"), &what)?,
                });
            }
        }
        let rule = Rule {
            action: r["action"]
                .as_str()
                .ok_or(format!("{what}.action"))?
                .to_string(),
            errno: number(r.get("errnoRet"), &what)?,
            args,
        };
        for name in strings(r.get("names"), &what)? {
            calls.entry(name).or_default().insert(rule.clone());
        }
    }
    Ok(Effective {
        default_action: profile["defaultAction"]
            .as_str()
            .ok_or("defaultAction")?
            .to_string(),
        default_errno: number(profile.get("defaultErrnoRet"), "defaultErrnoRet")?,
        architectures,
        other,
        calls,
    })
}

/// Every difference between two effective profiles, one line each.
fn diff(ours: &Effective, theirs: &Effective) -> Vec<String> {
    let mut d = Vec::new();
    if ours.default_action != theirs.default_action {
        d.push(format!(
            "defaultAction: ours {} theirs {}",
            ours.default_action, theirs.default_action
        ));
    }
    if ours.default_errno != theirs.default_errno {
        d.push(format!(
            "defaultErrnoRet: ours {:?} theirs {:?}",
            ours.default_errno, theirs.default_errno
        ));
    }
    if ours.architectures != theirs.architectures {
        d.push(format!(
            "architectures: ours {:?} theirs {:?}",
            ours.architectures, theirs.architectures
        ));
    }
    if ours.other != theirs.other {
        d.push(format!(
            "other fields: ours {:?} theirs {:?}",
            ours.other, theirs.other
        ));
    }
    let names: BTreeSet<&String> = ours.calls.keys().chain(theirs.calls.keys()).collect();
    for name in names {
        let (o, t) = (ours.calls.get(name), theirs.calls.get(name));
        if o != t {
            d.push(format!("{name}: ours {o:?} theirs {t:?}"));
        }
    }
    d
}

fn ours(caps: &[Capability], arch: Arch) -> Effective {
    let profile = serde_json::to_value(default_seccomp(caps, arch)).expect("serialises");
    effective(&profile).expect("our profile reads back")
}

fn theirs(moby: &Value, caps: &[Capability], arch: Arch, kernel: (u64, u64, u64)) -> Effective {
    let held: BTreeSet<String> = caps
        .iter()
        .map(|c| match serde_json::to_value(c) {
            Ok(Value::String(s)) => s,
            other => panic!("{c:?} serialises as {other:?}"),
        })
        .collect();
    let resolved = resolve_moby(moby, &scmp_name(arch), &held, kernel).expect("Docker's resolves");
    effective(&resolved).expect("Docker's resolved profile reads back")
}

fn compare(moby: &Value, what: &str, caps: &[Capability], arch: Arch, kernel: (u64, u64, u64)) {
    let d = diff(&ours(caps, arch), &theirs(moby, caps, arch, kernel));
    assert!(
        d.is_empty(),
        "{what}, {arch:?}, kernel {kernel:?}:\n{}",
        d.join("\n")
    );
}

/// The named capability sets: none, runc's, Docker's, all, and each alone.
fn cap_sets() -> Vec<(String, Vec<Capability>)> {
    let mut sets = vec![
        ("no capabilities".to_string(), Vec::new()),
        ("runc's default".to_string(), caps(&RUNC_CAPS)),
        ("Docker's default".to_string(), caps(&DOCKER_CAPS)),
        ("all capabilities".to_string(), caps(&ALL_CAPS)),
    ];
    sets.extend(ALL_CAPS.iter().map(|c| (format!("only {c}"), caps(&[c]))));
    sets
}

#[test]
fn equal_to_dockers_for_x86_64_and_every_named_capability_set() {
    let Some(moby) = moby() else { return };
    for kernel in [KERNEL, running_kernel()] {
        for (what, set) in cap_sets() {
            compare(&moby, &what, &set, Arch::ScmpArchX86_64, kernel);
        }
    }
    // x86_64 lists its compatibility ABIs, as Docker's archMap does.
    let p = default_seccomp(&[], Arch::ScmpArchX86_64);
    assert_eq!(
        p.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
    );
}

/// Every set of at most `k` of the indices `0..n`.
fn small_subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    let mut frontier = vec![Vec::new()];
    for _ in 0..k {
        let mut next = Vec::new();
        for s in &frontier {
            let start = s.last().map_or(0, |l: &usize| l + 1);
            for i in start..n {
                let mut t = s.clone();
                t.push(i);
                next.push(t);
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    out
}

#[test]
fn equal_to_dockers_for_combinations_of_the_capabilities_it_names() {
    let Some(moby) = moby() else { return };
    // The capabilities Docker's rules mention: the rest cannot change its
    // result (and `all capabilities` above shows they do not change ours).
    // Every set of up to three of them, and every set lacking up to three
    // of them, the rest of the capabilities held.
    let mut named = BTreeSet::new();
    for rule in moby["syscalls"].as_array().into_iter().flatten() {
        for gate in ["includes", "excludes"] {
            for c in strings(rule[gate].get("caps"), gate).expect("caps") {
                named.insert(c);
            }
        }
    }
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    assert_eq!(named.len(), 14, "{named:?}");
    let named = caps(&named);
    let everything = caps(&ALL_CAPS);
    let mut sets = 0;
    for picked in small_subsets(named.len(), 3) {
        let with: Vec<Capability> = picked.iter().map(|&i| named[i]).collect();
        let without: Vec<Capability> = everything
            .iter()
            .filter(|c| !with.contains(c))
            .copied()
            .collect();
        for set in [with, without] {
            compare(
                &moby,
                &format!("{set:?}"),
                &set,
                Arch::ScmpArchX86_64,
                KERNEL,
            );
            sets += 1;
        }
    }
    assert_eq!(sets, 2 * (1 + 14 + 91 + 364));
}

#[test]
fn equal_to_dockers_for_every_architecture() {
    let Some(moby) = moby() else { return };
    for arch in ARCHES {
        for (what, set) in cap_sets() {
            compare(&moby, &what, &set, arch, KERNEL);
        }
    }
}

#[test]
fn native_is_the_build_target() {
    if cfg!(target_arch = "x86_64") {
        for (_, set) in cap_sets() {
            assert_eq!(
                default_seccomp(&set, Arch::ScmpArchNative),
                default_seccomp(&set, Arch::ScmpArchX86_64)
            );
        }
    }
}

/// Docker gates ptrace and `process_vm_*` on Linux 4.8; we resolve that
/// for this runtime's kernels, so below 4.8 exactly those differ.
#[test]
fn the_kernel_gate_is_the_only_thing_resolved_ahead() {
    let Some(moby) = moby() else { return };
    let set = caps(&RUNC_CAPS);
    let d = diff(
        &ours(&set, Arch::ScmpArchX86_64),
        &theirs(&moby, &set, Arch::ScmpArchX86_64, (4, 7, 0)),
    );
    let names: Vec<&str> = d.iter().filter_map(|l| l.split(':').next()).collect();
    assert_eq!(
        names,
        ["process_vm_readv", "process_vm_writev", "ptrace"],
        "{d:?}"
    );
    compare(
        &moby,
        "runc's default",
        &set,
        Arch::ScmpArchX86_64,
        (4, 8, 0),
    );
}

// The comparer itself: a planted difference must show, ordering must not.

fn planted(change: impl FnOnce(&mut Value)) -> Vec<String> {
    let base = serde_json::to_value(default_seccomp(&[], Arch::ScmpArchX86_64)).expect("json");
    let mut changed = base.clone();
    change(&mut changed);
    diff(
        &effective(&changed).expect("reads back"),
        &effective(&base).expect("reads back"),
    )
}

/// The index of the first rule naming `name`.
fn rule_of(p: &Value, name: &str) -> usize {
    p["syscalls"]
        .as_array()
        .and_then(|r| {
            r.iter().position(|r| {
                r["names"]
                    .as_array()
                    .is_some_and(|n| n.contains(&json!(name)))
            })
        })
        .unwrap_or_else(|| panic!("no rule for {name}"))
}

#[test]
fn the_comparer_sees_planted_differences() {
    let one = |d: Vec<String>, what: &str| {
        assert_eq!(d.len(), 1, "{what}: {d:?}");
        assert!(d[0].starts_with(what), "{what}: {d:?}");
    };
    one(
        planted(|p| {
            let i = rule_of(p, "socketpair");
            let names = p["syscalls"][i]["names"].as_array_mut().expect("names");
            names.retain(|n| n != "socketpair");
        }),
        "socketpair",
    );
    one(
        planted(|p| {
            p["syscalls"][0]["names"]
                .as_array_mut()
                .expect("names")
                .push(json!("kexec_load"));
        }),
        "kexec_load",
    );
    one(
        planted(|p| {
            let i = rule_of(p, "clone3");
            p["syscalls"][i]["errnoRet"] = json!(1);
        }),
        "clone3",
    );
    one(
        planted(|p| {
            let i = rule_of(p, "personality");
            p["syscalls"][i]["args"][0]["value"] = json!(9);
        }),
        "personality",
    );
    one(
        planted(|p| {
            let i = rule_of(p, "clone");
            p["syscalls"][i]["args"][0]["valueTwo"] = json!(0);
        }),
        "clone",
    );
    one(
        planted(|p| {
            let i = rule_of(p, "clone");
            p["syscalls"][i]["args"][0]["index"] = json!(1);
        }),
        "clone",
    );
    one(
        planted(|p| {
            let i = rule_of(p, "socket");
            p["syscalls"][i]["args"][0]["op"] = json!("SCMP_CMP_LE");
        }),
        "socket",
    );
    one(
        planted(|p| {
            let i = rule_of(p, "socket");
            p["syscalls"][i]["action"] = json!("SCMP_ACT_LOG");
        }),
        "socket",
    );
    one(
        planted(|p| {
            let i = rule_of(p, "socket");
            let extra = json!({"index": 1, "value": 0, "op": "SCMP_CMP_NE"});
            p["syscalls"][i]["args"]
                .as_array_mut()
                .expect("args")
                .push(extra);
        }),
        "socket",
    );
    one(
        planted(|p| p["defaultErrnoRet"] = json!(38)),
        "defaultErrnoRet",
    );
    one(
        planted(|p| p["defaultAction"] = json!("SCMP_ACT_KILL")),
        "defaultAction",
    );
    one(
        planted(|p| {
            p["architectures"].as_array_mut().expect("arches").pop();
        }),
        "architectures",
    );
    one(
        planted(|p| p["flags"] = json!(["SECCOMP_FILTER_FLAG_LOG"])),
        "other fields",
    );
    // An unconditional rule next to the conditional ones is a difference
    // too, though the compiler would let it decide alone.
    one(
        planted(|p| {
            p["syscalls"][0]["names"]
                .as_array_mut()
                .expect("names")
                .push(json!("socket"));
        }),
        "socket",
    );
}

#[test]
fn the_comparer_ignores_only_ordering() {
    let d = planted(|p| {
        let rules = p["syscalls"].as_array_mut().expect("rules");
        rules.reverse();
        for r in rules.iter_mut() {
            if let Some(n) = r["names"].as_array_mut() {
                n.reverse();
            }
        }
        // The same rule twice is still the same set of rules.
        let again = rules[0].clone();
        rules.push(again);
        p["architectures"].as_array_mut().expect("arches").reverse();
    });
    assert!(d.is_empty(), "{d:?}");
    let d = planted(|p| {
        let i = rule_of(p, "clone");
        let args = p["syscalls"][i]["args"].as_array_mut().expect("args");
        args.push(json!({"index": 2, "value": 0, "op": "SCMP_CMP_EQ"}));
        args.reverse();
    });
    assert_eq!(d.len(), 1, "{d:?}");
}

#[test]
fn the_converter_resolves_includes_and_excludes_as_docker() {
    let moby = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null},
        ],
        "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["b"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_BPF"]}},
            {"names": ["c"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "excludes": {"caps": ["CAP_SYS_ADMIN", "CAP_BPF"]}},
            {"names": ["d"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["e"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"names": ["f"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.10"}},
            {"names": ["g"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.10"}},
            {"names": ["h"], "action": "SCMP_ACT_ALLOW", "comment": "ignored",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ],
    });
    let names = |caps: &[&str], arch: &str, kernel| -> Vec<String> {
        let held = caps.iter().map(|c| c.to_string()).collect();
        let r = resolve_moby(&moby, arch, &held, kernel).expect("resolves");
        effective(&r)
            .expect("reads back")
            .calls
            .into_keys()
            .collect()
    };
    let x86_64 = "SCMP_ARCH_X86_64";
    assert_eq!(names(&[], x86_64, (5, 9, 0)), ["a", "c", "d", "g", "h"]);
    assert_eq!(
        names(&["CAP_BPF"], x86_64, (5, 10, 0)),
        ["a", "d", "f", "h"]
    );
    assert_eq!(
        names(
            &["CAP_BPF", "CAP_SYS_ADMIN"],
            "SCMP_ARCH_RISCV64",
            (6, 1, 3)
        ),
        ["a", "b", "e", "f", "h"]
    );
    let r = resolve_moby(&moby, x86_64, &BTreeSet::new(), KERNEL).expect("resolves");
    assert_eq!(
        r["architectures"],
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    );
    let r = resolve_moby(&moby, "SCMP_ARCH_RISCV64", &BTreeSet::new(), KERNEL).expect("resolves");
    assert_eq!(r["architectures"], json!(["SCMP_ARCH_RISCV64"]));
    let r = resolve_moby(&moby, "SCMP_ARCH_ARM", &BTreeSet::new(), KERNEL).expect("resolves");
    assert!(r.get("architectures").is_none());
    // What it does not know, it refuses rather than ignores.
    let mut odd = moby.clone();
    odd["syscalls"][1]["includes"]["maxKernel"] = json!("7.0");
    assert!(resolve_moby(&odd, x86_64, &BTreeSet::new(), KERNEL).is_err());
    let mut odd = moby.clone();
    odd["syscalls"][0]["name"] = json!("a");
    assert!(resolve_moby(&odd, x86_64, &BTreeSet::new(), KERNEL).is_err());
    assert_eq!(parse_kernel("6.18.44-fc-v1045"), Some((6, 18, 44)));
    assert_eq!(parse_kernel("4.8"), Some((4, 8, 0)));
}

/// What the profile is, as the runtime reads it back from `config.json`.
#[test]
fn the_profile_round_trips_through_json() {
    for (_, set) in cap_sets() {
        let p = default_seccomp(&set, Arch::ScmpArchX86_64);
        let back: LinuxSeccomp =
            serde_json::from_value(serde_json::to_value(&p).expect("json")).expect("parses");
        assert_eq!(back, p);
    }
}
