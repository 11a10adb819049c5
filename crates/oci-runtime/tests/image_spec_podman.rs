//! Image config → process, against podman: the same image config and the
//! same overrides go to `podman create` (whose config.json `podman init`
//! writes) and to [`ImageProcess::resolve`]; args, cwd, uid, gid,
//! additional gids and the environment must agree.
//!
//! podman (Debian's 4.3, installed by `scripts/setup.sh`) runs on its own
//! storage and run roots in a temp dir, with the flags DEVELOPERS.md names
//! for this machine. Its environment holds a few entries of its own
//! (`container=podman`, `HOSTNAME`, `HOME`, `TERM`), which are left out.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_runtime::{ImageOverrides, ImageProcess};
use serde_json::{Value, json};

/// podman's own environment entries.
const PODMAN_ENV: [&str; 4] = ["container", "HOSTNAME", "HOME", "TERM"];

struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.path().join("storage"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args([
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
                "--runtime",
                "runc",
            ]);
        c
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .cmd()
            .args(args)
            .output()
            .map_err(|e| format!("podman: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "-fa"]).output();
        let _ = self.cmd().args(["system", "reset", "-f"]).output();
        // Anything podman left mounted under the temp dir.
        common::unmount_under(self.dir.path());
    }
}

fn setup() -> Option<Podman> {
    if !common::root_or_skip("image_spec_podman") {
        return None;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "podman is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("skipping: podman is not installed");
        return None;
    }
    let p = Podman {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let root = p.rootfs();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("srv")).unwrap();
    std::fs::create_dir_all(root.join("opt")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/true")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n\
         www:x:33:33::/var/www:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:root,app\nwww:x:33:\napp:x:1001:\naudio:x:29:app,www\n",
    )
    .unwrap();
    let tar = p.dir.path().join("rootfs.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar")
        .success();
    assert!(ok, "tar of the test rootfs");
    Some(p)
}

/// An image: its config as `podman import --change` lines and as JSON.
struct Image {
    name: &'static str,
    changes: &'static [&'static str],
    config: Value,
}

fn images() -> Vec<Image> {
    vec![
        Image {
            name: "localhost/imgspec-full:t",
            changes: &[
                r#"ENTRYPOINT ["/bin/sh", "-c"]"#,
                r#"CMD ["echo hi"]"#,
                "ENV A=1",
                "ENV B=2",
                "USER app",
                "WORKDIR /srv",
            ],
            config: json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"],
                           "Env": ["A=1", "B=2"], "User": "app", "WorkingDir": "/srv"}),
        },
        Image {
            name: "localhost/imgspec-cmd:t",
            changes: &[r#"CMD ["/bin/true", "x"]"#],
            config: json!({"Cmd": ["/bin/true", "x"]}),
        },
        Image {
            name: "localhost/imgspec-group:t",
            changes: &[r#"CMD ["/bin/true"]"#, "USER 1000:audio"],
            config: json!({"Cmd": ["/bin/true"], "User": "1000:audio"}),
        },
    ]
}

/// Overrides as podman flags, as image arguments and as [`ImageOverrides`].
struct Case {
    flags: Vec<String>,
    args: Vec<String>,
    o: ImageOverrides,
}

fn case(
    entrypoint: Option<&[&str]>,
    cmd: Option<&[&str]>,
    user: Option<&str>,
    env: &[&str],
    workdir: Option<&str>,
    groups: &[u32],
) -> Case {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut flags = Vec::new();
    if let Some(e) = entrypoint {
        flags.push(format!(
            "--entrypoint={}",
            serde_json::to_string(e).unwrap()
        ));
    }
    if let Some(u) = user {
        flags.push(format!("--user={u}"));
    }
    for e in env {
        flags.push(format!("--env={e}"));
    }
    if let Some(w) = workdir {
        flags.push(format!("--workdir={w}"));
    }
    for g in groups {
        flags.push(format!("--group-add={g}"));
    }
    Case {
        flags,
        args: cmd.map(s).unwrap_or_default(),
        o: ImageOverrides {
            entrypoint: entrypoint.map(s),
            cmd: cmd.map(s),
            env: s(env),
            working_dir: workdir.map(str::to_string),
            user: user.map(str::to_string),
            additional_gids: groups.to_vec(),
            ..ImageOverrides::default()
        },
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(None, None, None, &[], None, &[]),
        case(None, Some(&["/bin/true", "bye"]), None, &[], None, &[]),
        case(Some(&["/bin/true"]), None, None, &[], None, &[]),
        case(
            Some(&["/bin/sh", "-c"]),
            Some(&["true"]),
            None,
            &[],
            None,
            &[],
        ),
        case(None, None, Some("app"), &["B=3", "C=4"], Some("/opt"), &[]),
        case(None, None, Some("1000"), &[], None, &[]),
        case(None, None, Some("1000:29"), &[], None, &[]),
        case(None, None, Some("app:wheel"), &[], None, &[]),
        case(None, None, Some("root"), &[], None, &[5]),
        case(None, None, Some("www"), &[], None, &[]),
        case(None, None, Some("4242"), &[], None, &[]),
        case(None, None, Some("0:0"), &["PATH=/bin"], None, &[]),
    ]
}

/// What podman's config.json holds for the fields compared.
fn podman_process(p: &Podman, image: &str, c: &Case) -> Result<Value, String> {
    let mut create = vec![
        "create",
        "--network=none",
        "--ulimit=nofile=1024:1024",
        "--ulimit=nproc=1024:1024",
    ];
    create.extend(c.flags.iter().map(String::as_str));
    create.push(image);
    create.extend(c.args.iter().map(String::as_str));
    let id = p.run(&create)?;
    let id = id.lines().last().unwrap_or_default().to_string();
    let result = p.run(&["init", &id]).and_then(|_| {
        let path = p.run(&["inspect", "--format", "{{.OCIConfigPath}}", &id])?;
        let text = std::fs::read_to_string(Path::new(&path)).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(v["process"].clone())
    });
    let _ = p.run(&["rm", "-f", &id]);
    result
}

fn env_map<'a>(env: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    env.filter_map(|e| e.split_once('='))
        .filter(|(n, _)| !PODMAN_ENV.contains(n))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn image_configs_and_overrides_resolve_as_podman_resolves_them() {
    let Some(p) = setup() else {
        return;
    };
    let tar = p.dir.path().join("rootfs.tar");
    let mut compared = 0;
    for image in images() {
        let mut import = vec!["import".to_string()];
        for c in image.changes {
            import.push(format!("--change={c}"));
        }
        import.push(tar.to_string_lossy().into_owned());
        import.push(image.name.to_string());
        let refs: Vec<&str> = import.iter().map(String::as_str).collect();
        p.run(&refs).expect("podman import");
        let config: oci_spec::image::ImageConfiguration = serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": image.config,
        }))
        .expect("an image config");

        for c in cases() {
            let what = format!("{} {:?} {:?}", image.name, c.flags, c.args);
            let theirs = podman_process(&p, image.name, &c)
                .unwrap_or_else(|e| panic!("{what}: podman failed: {e}"));
            let ours = ImageProcess::resolve(&config, &p.rootfs(), &c.o)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let args: Vec<String> = serde_json::from_value(theirs["args"].clone()).unwrap();
            assert_eq!(ours.args, args, "{what}: args");
            assert_eq!(ours.cwd.to_str(), theirs["cwd"].as_str(), "{what}: cwd");
            let user = &theirs["user"];
            assert_eq!(
                (json!(ours.uid), json!(ours.gid)),
                (user["uid"].clone(), user["gid"].clone()),
                "{what}: uid/gid"
            );
            let gids: Vec<u32> =
                serde_json::from_value(user["additionalGids"].clone()).unwrap_or_default();
            let mut a = ours.additional_gids.clone();
            let mut b = gids;
            a.sort();
            b.sort();
            assert_eq!(a, b, "{what}: additional gids");
            let theirs_env: Vec<String> =
                serde_json::from_value(theirs["env"].clone()).unwrap_or_default();
            assert_eq!(
                env_map(ours.env.iter().map(String::as_str)),
                env_map(theirs_env.iter().map(String::as_str)),
                "{what}: env"
            );
            compared += 1;
        }

        // A user the image does not have: both refuse, naming it.
        let missing = case(None, None, Some("nobody"), &[], None, &[]);
        let theirs = podman_process(&p, image.name, &missing);
        assert!(theirs.is_err(), "podman took user nobody: {theirs:?}");
        let ours = ImageProcess::resolve(&config, &p.rootfs(), &missing.o).unwrap_err();
        assert!(ours.to_string().contains("nobody"), "{ours}");
    }
    assert_eq!(compared, images().len() * cases().len());
}
