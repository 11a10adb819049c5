//! The crate against Debian's reference plugins (`containernetworking-plugins`
//! in /usr/lib/cni): a bridge network with host-local IPAM, loopback and
//! portmap; ADD, CHECK and DEL (also from the cache alone, as after a
//! restart); version negotiation; and misbehaving plugins of the test's own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cni::{Attachment, Cni, Error, config};

const BIN: &str = "/usr/lib/cni";

fn root_or_skip(name: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && Path::new(BIN).join("bridge").exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name}: needs root and {BIN}/bridge under CI");
    }
    eprintln!("skipping {name}: needs root and containernetworking-plugins");
    false
}

/// A bridge network of its own (bridge name, subnet and IPAM dir unique to
/// this test process), plus portmap.
fn network(dir: &Path, version: &str, tag: u8) -> config::NetworkConfigList {
    let n = std::process::id() % 200 + 20;
    let doc = serde_json::json!({
        "cniVersion": version,
        "name": format!("cnitest{tag}"),
        "plugins": [
            {"type": "bridge", "bridge": format!("cnit{n}x{tag}"), "isGateway": true,
             "ipMasq": false, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": dir.join("ipam"),
                      "ranges": [[{"subnet": format!("10.{n}.{tag}.0/24")}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    config::parse_list(doc.to_string().as_bytes(), Path::new("test.conflist")).unwrap()
}

fn in_netns(ns: &Path, cmd: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(cmd)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Netns(PathBuf, String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = cni::netns::remove(&self.0);
        let _ = Command::new("ip").args(["link", "del", &self.1]).output();
    }
}

#[test]
fn bridge_network_add_check_del_and_del_from_the_cache() {
    if !root_or_skip("bridge_network_add_check_del_and_del_from_the_cache") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let list = network(dir.path(), "1.0.0", 1);
    let bridge = list.plugins[0].raw["bridge"].as_str().unwrap().to_string();
    let ns = cni::netns::create(&dir.path().join("netns"), "pod1").unwrap();
    let _guard = Netns(ns.clone(), bridge.clone());
    assert!(cni::netns::is_pinned(&ns));
    // Its loopback is up, as a pod's must be.
    let lo = in_netns(&ns, &["ip", "-o", "link", "show", "lo"]);
    assert!(lo.contains("<LOOPBACK,UP,LOWER_UP>"), "{lo}");
    let cni = Cni::new(vec![PathBuf::from(BIN)], dir.path().join("cache"));
    let mut att = Attachment {
        container_id: "pod1".into(),
        netns: ns.clone(),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAME".into(), "p".into())],
        ..Default::default()
    };
    att.capability_args.insert(
        "portMappings".into(),
        serde_json::json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]),
    );
    let r = cni.add(&list, &att).unwrap();
    let ips = r.pod_ips();
    assert_eq!(ips.len(), 1, "{r:?}");
    let ip = ips[0].to_string();
    let n = std::process::id() % 200 + 20;
    assert!(ip.starts_with(&format!("10.{n}.1.")), "{ip}");
    assert!(in_netns(&ns, &["ip", "-o", "addr"]).contains(&ip));
    // The IP is the pod's: host-local keeps it under the container's id.
    let held = std::fs::read_dir(dir.path().join("ipam/cnitest1"))
        .unwrap()
        .count();
    assert!(held >= 1);
    // portmap 1.1.1's CHECK looks for an IPv6 chain it never made for an
    // IPv4-only pod, so CHECK is shown on the bridge alone.
    let mut bridge_only = list.clone();
    bridge_only.name = "cnitest1b".into();
    bridge_only.plugins.truncate(1);
    let other = Attachment {
        container_id: "pod1b".into(),
        ifname: "eth1".into(),
        ..att.clone()
    };
    cni.add(&bridge_only, &other).unwrap();
    cni.check(&bridge_only, &other).unwrap();
    cni.del(Some(&bridge_only), "cnitest1b", &other).unwrap();
    let e = cni.check(&bridge_only, &other).unwrap_err();
    assert!(e.to_string().contains("no cached ADD result"), "{e}");

    // A "restart": a new instance, no list given; DEL comes from the cache.
    let again = Cni::new(vec![PathBuf::from(BIN)], dir.path().join("cache"));
    let cached = again.cached("cnitest1", &att).expect("cached");
    assert_eq!(cached.result.expect("the ADD finished").pod_ips(), ips);
    assert_eq!(cached.attachment.netns, ns);
    again.del(None, "cnitest1", &att).unwrap();
    assert!(again.cached("cnitest1", &att).is_none());
    assert!(
        !std::fs::read_dir(dir.path().join("ipam/cnitest1"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy() == ip),
        "the IP was not released"
    );
    // DEL again (and with the netns gone): nothing to do, no error.
    cni::netns::remove(&ns).unwrap();
    att.netns = PathBuf::new();
    again.del(Some(&list), "cnitest1", &att).unwrap();
}

#[test]
fn versions_are_negotiated_and_old_lists_lack_status_and_gc() {
    if !root_or_skip("versions_are_negotiated_and_old_lists_lack_status_and_gc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cni = Cni::new(vec![PathBuf::from(BIN)], dir.path().join("cache"));
    let v = cni.version("bridge").unwrap();
    assert!(v.supported.contains(&"1.0.0".to_string()), "{v:?}");
    let list = network(dir.path(), "1.1.0", 2);
    let att = Attachment {
        container_id: "x".into(),
        netns: PathBuf::from("/proc/self/ns/net"),
        ifname: "eth0".into(),
        ..Default::default()
    };
    // Debian's 1.1.1 plugins stop at 1.0.0: a 1.1.0 list is refused before any ADD.
    let e = cni.add(&list, &att).unwrap_err();
    assert!(matches!(e, Error::UnsupportedVersion { .. }), "{e}");
    assert!(e.to_string().contains("1.1.0"), "{e}");
    let old = network(dir.path(), "1.0.0", 2);
    for e in [
        cni.status(&old).unwrap_err(),
        cni.gc(&old, &[]).unwrap_err(),
    ] {
        assert!(matches!(e, Error::NotSupported { .. }), "{e}");
    }
    let mut missing = old.clone();
    missing.plugins[0].kind = "no-such-plugin".into();
    let e = cni.add(&missing, &att).unwrap_err();
    assert!(matches!(e, Error::PluginNotFound { .. }), "{e}");
}

/// A plugin of the test's own: a shell script.
fn fake(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn misbehaving_plugins_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let version = r#"if [ "$CNI_COMMAND" = VERSION ]; then echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}'; exit 0; fi"#;
    fake(&bin, "garbage", &format!("{version}\necho 'not json'"));
    fake(
        &bin,
        "fails",
        &format!(
            "{version}\necho '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"no addresses left\",\"details\":\"pool full\"}}'; exit 1"
        ),
    );
    fake(
        &bin,
        "crashes",
        &format!("{version}\necho boom >&2; exit 2"),
    );
    fake(&bin, "hangs", &format!("{version}\nexec sleep 30"));
    fake(
        &bin,
        "records",
        &format!(
            "{version}\ncat > \"$(dirname \"$0\")/../seen-$CNI_COMMAND.json\"; env > \"$(dirname \"$0\")/../env-$CNI_COMMAND\"\necho '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.9.9.9/24\"}}]}}'"
        ),
    );
    let cni = Cni::new(vec![bin.clone()], dir.path().join("cache"))
        .with_timeout(std::time::Duration::from_secs(2));
    let att = Attachment {
        container_id: "c1".into(),
        netns: PathBuf::from("/proc/self/ns/net"),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAMESPACE".into(), "default".into())],
        ..Default::default()
    };
    let list = |kind: &str| {
        config::parse_list(
            format!(r#"{{"cniVersion":"1.0.0","name":"n","plugins":[{{"type":"{kind}"}}]}}"#)
                .as_bytes(),
            Path::new("x"),
        )
        .unwrap()
    };
    let e = cni.add(&list("garbage"), &att).unwrap_err();
    assert!(matches!(e, Error::BadReply { .. }), "{e}");
    let e = cni.add(&list("fails"), &att).unwrap_err();
    assert!(
        e.to_string()
            .contains("no addresses left (code 11): pool full"),
        "{e}"
    );
    let e = cni.add(&list("crashes"), &att).unwrap_err();
    assert!(e.to_string().contains("boom"), "{e}");
    let e = cni.add(&list("hangs"), &att).unwrap_err();
    assert!(e.to_string().contains("did not finish"), "{e}");
    // What a plugin is given: its config with name, version; the env.
    let r = cni.add(&list("records"), &att).unwrap();
    assert_eq!(r.pod_ips()[0].to_string(), "10.9.9.9");
    let seen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("seen-ADD.json")).unwrap()).unwrap();
    assert_eq!(seen["name"], "n");
    assert_eq!(seen["cniVersion"], "1.0.0");
    let env = std::fs::read_to_string(dir.path().join("env-ADD")).unwrap();
    for want in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=c1",
        "CNI_IFNAME=eth0",
        "CNI_NETNS=/proc/self/ns/net",
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
    }
    // VERSION is asked once per binary, again once it changed.
    let counting = format!(
        "if [ \"$CNI_COMMAND\" = VERSION ]; then echo v >> \"$(dirname \"$0\")/../versions\"; fi\n{version}\necho '{{\"cniVersion\":\"1.0.0\"}}'"
    );
    fake(&bin, "counts", &counting);
    let att2 = Attachment {
        container_id: "c2".into(),
        ..att.clone()
    };
    for _ in 0..3 {
        cni.add(&list("counts"), &att2).unwrap();
    }
    let asked = || {
        std::fs::read_to_string(dir.path().join("versions"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(asked(), 1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    fake(&bin, "counts", &format!("{counting}\n# changed"));
    cni.add(&list("counts"), &att2).unwrap();
    assert_eq!(asked(), 2);
    // DEL gets the cached result as prevResult.
    cni.del(None, "n", &att).unwrap();
    let seen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("seen-DEL.json")).unwrap()).unwrap();
    assert_eq!(seen["prevResult"]["ips"][0]["address"], "10.9.9.9/24");
}
