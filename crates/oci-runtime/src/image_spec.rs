//! An OCI image *config* turned into the process of a runtime spec, with the
//! overrides a CRI request or `docker run` gives, as containerd and podman
//! do it. It reads the image config and the unpacked root filesystem only
//! (for `/etc/passwd` and `/etc/group`), never an image store.
//!
//! - **Command**: an entrypoint override replaces the image's entrypoint and
//!   drops its `Cmd`; an args override replaces `Cmd`. With neither, the
//!   image's `Entrypoint` followed by its `Cmd`. An empty result is an error.
//! - **Environment**: the image's `Env`, then each override: one for a name
//!   the image sets replaces it in place, a new one is appended. `PATH` is
//!   added (the usual default) when neither sets it.
//! - **Working directory**: the override, else the image's `WorkingDir`, else `/`.
//! - **User**: the override, else the image's `User`, in any of the forms
//!   `name`, `uid`, `name:group`, `uid:gid`, `name:gid`, `uid:group`. Names
//!   are looked up in the rootfs's `/etc/passwd` and `/etc/group`, opened
//!   with `openat2(RESOLVE_IN_ROOT)`, so a symlink or `..` there resolves
//!   inside the rootfs and never reaches the host's files. A user without a
//!   group takes the passwd entry's group (0 when a numeric uid has none).
//!   A name that is not found is an error naming it.
//! - **Additional groups**: the primary gid, then every group of
//!   `/etc/group` that lists the user's name as a member, then the
//!   overrides', without repeats. Where podman and containerd differ (a group
//!   named in `User`, no user at all, the default `PATH`), [`Convention`]
//!   says whose way; both are checked against the real tools.
//! - The image's `StopSignal` and `Volumes` are returned for the caller (the
//!   spec has no place for them): a CRI server stops with that signal and
//!   mounts something at those paths.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Process, Spec};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{Error, Result};

/// `PATH` when neither the image nor the overrides set one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A passwd or group file larger than this is refused.
const MAX_DB: u64 = 16 << 20;

/// What a CRI request or a `docker run` command line changes in an image's process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageOverrides {
    /// Replaces the image's `Entrypoint`, and drops its `Cmd` (CRI `command`,
    /// `docker run --entrypoint`).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's `Cmd` (CRI `args`, `docker run IMAGE ARGS…`).
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` entries merged over the image's `Env`.
    pub env: Vec<String>,
    /// Replaces the image's `WorkingDir`.
    pub working_dir: Option<String>,
    /// Replaces the image's `User`.
    pub user: Option<String>,
    /// Groups added after those the image's files give.
    pub additional_gids: Vec<u32>,
    /// Whose rules decide where the peers differ.
    pub convention: Convention,
}

/// Where podman and containerd resolve an image differently, whose way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Convention {
    /// podman's (and Docker's): [`DEFAULT_PATH`] whenever nothing sets
    /// `PATH`; a group named in `User` is the only additional group; with no
    /// user at all, root's memberships without the primary gid.
    #[default]
    Podman,
    /// containerd's (`ctr`, its CRI plugin): [`DEFAULT_PATH`] only when the
    /// image has no `Env` at all; the primary gid and the user's
    /// memberships always, a group named in `User` included.
    Containerd,
}

/// The process an image config gives, and what it says besides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageProcess {
    /// `args`.
    pub args: Vec<String>,
    /// `env`.
    pub env: Vec<String>,
    /// `cwd`.
    pub cwd: PathBuf,
    /// `user.uid`.
    pub uid: u32,
    /// `user.gid`.
    pub gid: u32,
    /// `user.additionalGids`.
    pub additional_gids: Vec<u32>,
    /// The image's `StopSignal`, as written there (`SIGQUIT`, `3`, …).
    pub stop_signal: Option<String>,
    /// The image's `Volumes`: paths that expect a mount, sorted.
    pub volumes: Vec<String>,
}

impl ImageProcess {
    /// Resolves `image`'s process against the root filesystem at `rootfs`.
    pub fn resolve(
        image: &ImageConfiguration,
        rootfs: &Path,
        overrides: &ImageOverrides,
    ) -> Result<Self> {
        let c = image.config().clone().unwrap_or_default();
        let args: Vec<String> = match (&overrides.entrypoint, &overrides.cmd) {
            (Some(e), cmd) => e.iter().chain(cmd.iter().flatten()).cloned().collect(),
            (None, Some(cmd)) => c
                .entrypoint()
                .iter()
                .flatten()
                .chain(cmd.iter())
                .cloned()
                .collect(),
            (None, None) => c
                .entrypoint()
                .iter()
                .flatten()
                .chain(c.cmd().iter().flatten())
                .cloned()
                .collect(),
        };
        if args.is_empty() {
            return Err(image_err(
                "command",
                "none: the image has neither Entrypoint nor Cmd, and none was given",
            ));
        }

        let image_has_env = c.env().as_ref().is_some_and(|e| !e.is_empty());
        let mut env: Vec<String> = c.env().clone().unwrap_or_default();
        for (i, e) in env.iter().enumerate() {
            env_name(e).ok_or_else(|| {
                image_err(format!("Env[{i}]"), format!("{e:?} is not NAME=value"))
            })?;
        }
        for (i, o) in overrides.env.iter().enumerate() {
            let name = env_name(o).ok_or_else(|| {
                image_err(
                    format!("overrides env[{i}]"),
                    format!("{o:?} is not NAME=value"),
                )
            })?;
            match env.iter_mut().find(|e| env_name(e) == Some(name)) {
                Some(slot) => *slot = o.clone(),
                None => env.push(o.clone()),
            }
        }
        let add_path = match overrides.convention {
            Convention::Podman => !env.iter().any(|e| env_name(e) == Some("PATH")),
            Convention::Containerd => !image_has_env,
        };
        if add_path {
            env.insert(0, DEFAULT_PATH.to_string());
        }

        let cwd = overrides
            .working_dir
            .clone()
            .or_else(|| c.working_dir().clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string());
        if !cwd.starts_with('/') {
            return Err(image_err(
                "WorkingDir",
                format!("{cwd:?} is not an absolute path"),
            ));
        }

        let user = overrides
            .user
            .clone()
            .or_else(|| c.user().clone())
            .unwrap_or_default();
        let ids = resolve_user(rootfs, &user, overrides.convention)?;
        let mut additional_gids = ids.groups;
        for g in &overrides.additional_gids {
            if !additional_gids.contains(g) {
                additional_gids.push(*g);
            }
        }

        let mut volumes: Vec<String> = c
            .volumes()
            .iter()
            .flatten()
            .filter(|v| !v.is_empty())
            .cloned()
            .collect();
        volumes.sort();
        volumes.dedup();

        Ok(ImageProcess {
            args,
            env,
            cwd: cwd.into(),
            uid: ids.uid,
            gid: ids.gid,
            additional_gids,
            stop_signal: c.stop_signal().clone().filter(|s| !s.is_empty()),
            volumes,
        })
    }

    /// Sets these into `process`: args, env, cwd and user; the rest of it
    /// (terminal, capabilities, rlimits, …) stays as it is.
    pub fn apply(&self, process: &mut Process) {
        process.set_args(Some(self.args.clone()));
        process.set_env(Some(self.env.clone()));
        process.set_cwd(self.cwd.clone());
        let mut user = process.user().clone();
        user.set_uid(self.uid);
        user.set_gid(self.gid);
        user.set_additional_gids(if self.additional_gids.is_empty() {
            None
        } else {
            Some(self.additional_gids.clone())
        });
        user.set_username(None);
        process.set_user(user);
    }

    /// [`ImageProcess::apply`] on `spec`'s process (made if it has none),
    /// with the stop signal as the `org.opencontainers.image.stopSignal`
    /// annotation, as containerd records it.
    pub fn apply_to_spec(&self, spec: &mut Spec) {
        let mut process = spec.process().clone().unwrap_or_default();
        self.apply(&mut process);
        spec.set_process(Some(process));
        if let Some(sig) = &self.stop_signal {
            let mut a = spec.annotations().clone().unwrap_or_default();
            a.insert(
                "org.opencontainers.image.stopSignal".to_string(),
                sig.clone(),
            );
            spec.set_annotations(Some(a));
        }
    }
}

fn image_err(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::ImageConfig {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The name of a `NAME=value` entry; `None` when there is no `=` or no name.
fn env_name(e: &str) -> Option<&str> {
    e.split_once('=').map(|(n, _)| n).filter(|n| !n.is_empty())
}

struct Ids {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

/// Resolves a `User` string against the rootfs's account files.
fn resolve_user(rootfs: &Path, user: &str, convention: Convention) -> Result<Ids> {
    let bad = |reason: String| image_err(format!("User {user:?}"), reason);
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() && g.is_none() {
        // Root, with root's memberships; podman leaves the primary gid out.
        let mut ids = resolve_user(rootfs, "0", convention)?;
        if convention == Convention::Podman {
            ids.groups.retain(|g| *g != ids.gid);
        }
        return Ok(ids);
    }
    if u.is_empty() || g == Some("") {
        return Err(bad("expected user, uid, user:group or uid:gid".into()));
    }
    let root = rustix::fs::open(
        rootfs,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Io {
        operation: "open the root filesystem",
        path: rootfs.to_path_buf(),
        source: e.into(),
    })?;
    let passwd = read_db(&root, rootfs, "etc/passwd")?;
    // name:password:uid:gid:gecos:home:shell
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd
            .iter()
            .find(|f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid)),
        Err(_) => passwd
            .iter()
            .find(|f| f.first().map(String::as_str) == Some(u)),
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry
            .ok_or_else(|| bad(format!("no user {u:?} in the image's /etc/passwd")))?
            .get(2)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| bad(format!("the /etc/passwd entry of {u:?} has no numeric uid")))?,
    };
    let name = entry.and_then(|f| f.first()).cloned();
    let groups_db = read_db(&root, rootfs, "etc/group")?;
    let (gid, explicit) = match g {
        None => (
            entry.and_then(|f| f.get(3)?.parse().ok()).unwrap_or(0),
            false,
        ),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => (n, true),
            Err(_) => (
                // name:password:gid:members
                groups_db
                    .iter()
                    .find(|f| f.first().map(String::as_str) == Some(g))
                    .and_then(|f| f.get(2)?.parse().ok())
                    .ok_or_else(|| bad(format!("no group {g:?} in the image's /etc/group")))?,
                true,
            ),
        },
    };
    let mut groups = vec![gid];
    let memberships = !explicit || convention == Convention::Containerd;
    if memberships && let Some(name) = &name {
        for f in &groups_db {
            let member = f
                .get(3)
                .is_some_and(|m| m.split(',').any(|m| m.trim() == name));
            if let (true, Some(id)) = (member, f.get(2).and_then(|x| x.parse::<u32>().ok()))
                && !groups.contains(&id)
            {
                groups.push(id);
            }
        }
    }
    Ok(Ids { uid, gid, groups })
}

/// The colon-separated records of a passwd-style file of the rootfs, read
/// through `RESOLVE_IN_ROOT`; a missing file has none.
fn read_db(root: &impl AsFd, rootfs: &Path, rel: &str) -> Result<Vec<Vec<String>>> {
    let path = rootfs.join(rel);
    let fd = match rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                operation: "open in the root filesystem",
                path,
                source: e.into(),
            });
        }
    };
    let mut f = std::fs::File::from(fd);
    let meta = f.metadata().map_err(|source| Error::Io {
        operation: "stat in the root filesystem",
        path: path.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(image_err(rel, "not a regular file"));
    }
    if meta.len() > MAX_DB {
        return Err(image_err(rel, format!("larger than {MAX_DB} bytes")));
    }
    let mut bytes = Vec::new();
    f.by_ref()
        .take(MAX_DB + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            operation: "read in the root filesystem",
            path,
            source,
        })?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(config: serde_json::Value) -> ImageConfiguration {
        serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": config,
        }))
        .expect("an image config")
    }

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# a comment\nwww:x:33:33::/var/www:/bin/false\n\
             app:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root,app\nwww:x:33:\napp:x:1001:\naudio:x:29:app\n",
        )
        .unwrap();
        d
    }

    fn resolve(config: serde_json::Value, o: &ImageOverrides) -> Result<ImageProcess> {
        let r = rootfs();
        ImageProcess::resolve(&image(config), r.path(), o)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_merge_with_overrides() {
        let c = json!({"Entrypoint": ["/ep"], "Cmd": ["a", "b"]});
        type Case<'a> = (Option<&'a [&'a str]>, Option<&'a [&'a str]>, &'a [&'a str]);
        let cases: [Case; 4] = [
            (None, None, &["/ep", "a", "b"]),
            (None, Some(&["c"]), &["/ep", "c"]),
            (Some(&["/other"]), None, &["/other"]),
            (Some(&["/other"]), Some(&["c"]), &["/other", "c"]),
        ];
        for (ep, cmd, want) in cases {
            let o = ImageOverrides {
                entrypoint: ep.map(strings),
                cmd: cmd.map(strings),
                ..Default::default()
            };
            assert_eq!(resolve(c.clone(), &o).unwrap().args, strings(want));
        }
        let only_cmd = resolve(json!({"Cmd": ["/bin/sh"]}), &ImageOverrides::default());
        assert_eq!(only_cmd.unwrap().args, strings(&["/bin/sh"]));
        let none = resolve(json!({}), &ImageOverrides::default()).unwrap_err();
        assert!(
            none.to_string().contains("neither Entrypoint nor Cmd"),
            "{none}"
        );
    }

    #[test]
    fn env_overrides_replace_in_place_and_path_is_added() {
        let o = ImageOverrides {
            env: strings(&["B=2", "C=3"]),
            ..Default::default()
        };
        let p = resolve(json!({"Cmd": ["x"], "Env": ["A=1", "B=1"]}), &o).unwrap();
        assert_eq!(p.env, strings(&[DEFAULT_PATH, "A=1", "B=2", "C=3"]));
        let p = resolve(
            json!({"Cmd": ["x"], "Env": ["PATH=/bin"]}),
            &ImageOverrides::default(),
        )
        .unwrap();
        assert_eq!(p.env, strings(&["PATH=/bin"]));
        let bad = ImageOverrides {
            env: strings(&["novalue"]),
            ..Default::default()
        };
        let e = resolve(json!({"Cmd": ["x"]}), &bad).unwrap_err();
        assert!(e.to_string().contains("env[0]"), "{e}");
    }

    #[test]
    fn user_forms_and_groups() {
        let cases: [(&str, u32, u32, &[u32]); 9] = [
            ("", 0, 0, &[10]),
            ("root", 0, 0, &[0, 10]),
            ("app", 1000, 1001, &[1001, 10, 29]),
            ("1000", 1000, 1001, &[1001, 10, 29]),
            ("app:www", 1000, 33, &[33]),
            ("app:7", 1000, 7, &[7]),
            ("1000:33", 1000, 33, &[33]),
            ("4242", 4242, 0, &[0]),
            ("www", 33, 33, &[33]),
        ];
        for (user, uid, gid, groups) in cases {
            let o = ImageOverrides {
                user: Some(user.to_string()),
                ..Default::default()
            };
            let p = resolve(json!({"Cmd": ["x"], "User": "nobody"}), &o).unwrap();
            assert_eq!(
                (p.uid, p.gid, &p.additional_gids[..]),
                (uid, gid, groups),
                "{user}"
            );
        }
        for (user, what) in [
            ("nobody", "no user \"nobody\""),
            ("app:nogroup", "no group \"nogroup\""),
            (":", "expected user"),
        ] {
            let e = resolve(
                json!({"Cmd": ["x"], "User": user}),
                &ImageOverrides::default(),
            )
            .unwrap_err();
            assert!(e.to_string().contains(what), "{user}: {e}");
        }
    }

    #[test]
    fn account_files_are_read_inside_the_rootfs() {
        // /etc/passwd is a symlink that points out of the rootfs: it resolves
        // inside it, where there is no such file, never to the host's.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir(r.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("passwd"), r.path().join("etc/passwd"))
            .unwrap();
        let o = ImageOverrides {
            user: Some("evil".into()),
            ..Default::default()
        };
        let e = ImageProcess::resolve(&image(json!({"Cmd": ["x"]})), r.path(), &o).unwrap_err();
        assert!(e.to_string().contains("no user \"evil\""), "{e}");
        // A relative escape lands inside too.
        std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
        std::fs::write(r.path().join("passwd"), "inside:x:7:7::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("../../../../../../passwd", r.path().join("etc/passwd"))
            .unwrap();
        let o = ImageOverrides {
            user: Some("inside".into()),
            ..Default::default()
        };
        let p = ImageProcess::resolve(&image(json!({"Cmd": ["x"]})), r.path(), &o).unwrap();
        assert_eq!((p.uid, p.gid), (7, 7));
        // A missing rootfs is an error naming it.
        let e = ImageProcess::resolve(
            &image(json!({"Cmd": ["x"], "User": "app"})),
            &r.path().join("missing"),
            &ImageOverrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn cwd_stop_signal_volumes_and_spec() {
        let p = resolve(
            json!({"Cmd": ["x"], "WorkingDir": "/srv", "StopSignal": "SIGQUIT",
                   "Volumes": {"/data": {}, "/cache": {}}}),
            &ImageOverrides::default(),
        )
        .unwrap();
        assert_eq!(p.cwd, PathBuf::from("/srv"));
        assert_eq!(p.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(p.volumes, strings(&["/cache", "/data"]));
        let o = ImageOverrides {
            working_dir: Some("relative".into()),
            ..Default::default()
        };
        assert!(resolve(json!({"Cmd": ["x"]}), &o).is_err());

        let mut spec = Spec::default();
        p.apply_to_spec(&mut spec);
        let proc_ = spec.process().as_ref().unwrap();
        assert_eq!(proc_.args().as_deref(), Some(&strings(&["x"])[..]));
        assert_eq!(proc_.cwd(), Path::new("/srv"));
        assert_eq!(
            spec.annotations().as_ref().unwrap()["org.opencontainers.image.stopSignal"],
            "SIGQUIT"
        );
    }
}
