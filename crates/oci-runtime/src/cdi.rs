//! Container Device Interface: device specs (JSON or YAML) from spec dirs
//! (`/etc/cdi`, `/var/run/cdi`), and the edits a device asks for applied to
//! a runtime spec, as a CRI runtime does for `CDIDevices`.
//!
//! A device is named `vendor.com/class=name`. Applying it adds the spec's
//! and the device's `containerEdits`: environment (a name set again wins),
//! device nodes (type and numbers read from the host node when left out,
//! with a cgroup rule each), bind mounts and hooks. Specs are read when
//! asked for, so new files need no restart; a later dir wins over an
//! earlier one for the same device, and two files of one dir defining it
//! are an error naming both.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The spec dirs a CRI runtime reads, lowest priority first.
pub const DEFAULT_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// A spec file larger than this is refused.
const MAX_SPEC: u64 = 4 << 20;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceNode {
    path: String,
    #[serde(default)]
    host_path: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    major: Option<i64>,
    #[serde(default)]
    minor: Option<i64>,
    #[serde(default)]
    file_mode: Option<u32>,
    #[serde(default)]
    permissions: Option<String>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiMount {
    host_path: String,
    container_path: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiHook {
    hook_name: String,
    path: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Edits {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    mounts: Vec<CdiMount>,
    #[serde(default)]
    hooks: Vec<CdiHook>,
    #[serde(default)]
    additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiDevice {
    name: String,
    #[serde(default)]
    container_edits: Edits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecFile {
    cdi_version: String,
    kind: String,
    devices: Vec<CdiDevice>,
    #[serde(default)]
    container_edits: Edits,
}

/// One device found in the spec dirs.
#[derive(Debug, Clone)]
struct Found {
    file: PathBuf,
    spec_edits: Edits,
    edits: Edits,
}

fn cdi_err(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: what.into(),
        reason: reason.into(),
    }
}

/// Whether `kind` is `vendor/class` as CDI names them.
fn valid_kind(kind: &str) -> bool {
    let Some((vendor, class)) = kind.split_once('/') else {
        return false;
    };
    let ok = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    ok(vendor, b"-_.") && ok(class, b"-_")
}

fn valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn load_file(path: &Path) -> Result<SpecFile> {
    let field = path.display().to_string();
    let md = std::fs::metadata(path).map_err(|e| cdi_err(&field, e.to_string()))?;
    if md.len() > MAX_SPEC {
        return Err(cdi_err(&field, format!("larger than {MAX_SPEC} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| cdi_err(&field, e.to_string()))?;
    // JSON is YAML too.
    let spec: SpecFile =
        serde_yaml::from_str(&text).map_err(|e| cdi_err(&field, format!("not a CDI spec: {e}")))?;
    let version_ok = spec
        .cdi_version
        .strip_prefix("0.")
        .and_then(|r| r.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| (3..=8).contains(&m));
    if !version_ok {
        return Err(cdi_err(
            format!("{field}: cdiVersion"),
            format!(
                "{:?} is not a CDI version this runtime knows (0.3 to 0.8)",
                spec.cdi_version
            ),
        ));
    }
    if !valid_kind(&spec.kind) {
        return Err(cdi_err(
            format!("{field}: kind"),
            format!("{:?} is not vendor/class", spec.kind),
        ));
    }
    for d in &spec.devices {
        if !valid_device_name(&d.name) {
            return Err(cdi_err(
                format!("{field}: devices"),
                format!("{:?} is not a device name", d.name),
            ));
        }
    }
    Ok(spec)
}

/// Every device of the spec files in `dirs`, by qualified name.
fn registry(dirs: &[PathBuf]) -> Result<HashMap<String, Found>> {
    let mut out: HashMap<String, Found> = HashMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        files.sort();
        let mut this_dir: HashMap<String, PathBuf> = HashMap::new();
        for f in files {
            let spec = load_file(&f)?;
            for d in spec.devices {
                let name = format!("{}={}", spec.kind, d.name);
                if let Some(other) = this_dir.insert(name.clone(), f.clone()) {
                    return Err(cdi_err(
                        "CDI device",
                        format!(
                            "{name} is defined by both {} and {}",
                            other.display(),
                            f.display()
                        ),
                    ));
                }
                out.insert(
                    name,
                    Found {
                        file: f.clone(),
                        spec_edits: spec.container_edits.clone(),
                        edits: d.container_edits,
                    },
                );
            }
        }
    }
    Ok(out)
}

fn apply_edits(spec: &mut Value, e: &Edits, from: &Path) -> Result<()> {
    let field = from.display().to_string();
    // Environment: a name set again replaces the earlier value.
    let env = spec["process"]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut env: Vec<String> = env
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for kv in &e.env {
        let name = kv.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(name));
        env.push(kv.clone());
    }
    spec["process"]["env"] = json!(env);
    for g in &e.additional_gids {
        let gids = &mut spec["process"]["user"]["additionalGids"];
        if !gids.is_array() {
            *gids = json!([]);
        }
        if let Some(a) = gids.as_array_mut()
            && !a.contains(&json!(g))
        {
            a.push(json!(g));
        }
    }
    for d in &e.device_nodes {
        if !d.path.starts_with('/') {
            return Err(cdi_err(
                format!("{field}: deviceNodes"),
                format!("{:?} is not absolute", d.path),
            ));
        }
        let host = d.host_path.clone().unwrap_or_else(|| d.path.clone());
        let (mut kind, mut major, mut minor) = (d.kind.clone(), d.major, d.minor);
        let mut mode = d.file_mode;
        if kind.is_none() || major.is_none() || minor.is_none() {
            let md = std::fs::metadata(&host).map_err(|err| {
                cdi_err(format!("{field}: deviceNodes"), format!("{host}: {err}"))
            })?;
            let ft = md.file_type();
            let k = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                return Err(cdi_err(
                    format!("{field}: deviceNodes"),
                    format!("{host} is not a device node"),
                ));
            };
            kind.get_or_insert_with(|| k.to_string());
            major.get_or_insert(i64::from(libc::major(md.rdev())));
            minor.get_or_insert(i64::from(libc::minor(md.rdev())));
            mode.get_or_insert(md.mode() & 0o7777);
        }
        let perms = d.permissions.clone().unwrap_or_else(|| "rwm".into());
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(cdi_err(
                format!("{field}: deviceNodes"),
                format!("permissions {perms:?}: only r, w and m"),
            ));
        }
        let mut node = json!({"path": d.path, "type": kind, "major": major, "minor": minor});
        if let Some(m) = mode {
            node["fileMode"] = json!(m);
        }
        if let Some(u) = d.uid {
            node["uid"] = json!(u);
        }
        if let Some(g) = d.gid {
            node["gid"] = json!(g);
        }
        push(&mut spec["linux"]["devices"], node);
        push(
            &mut spec["linux"]["resources"]["devices"],
            json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": perms}),
        );
    }
    for m in &e.mounts {
        if !m.container_path.starts_with('/') || !m.host_path.starts_with('/') {
            return Err(cdi_err(
                format!("{field}: mounts"),
                format!(
                    "{} -> {}: paths must be absolute",
                    m.host_path, m.container_path
                ),
            ));
        }
        let options = if m.options.is_empty() {
            vec!["rbind".to_string(), "rprivate".into()]
        } else {
            m.options.clone()
        };
        push(
            &mut spec["mounts"],
            json!({"destination": m.container_path, "source": m.host_path,
                   "type": m.kind.clone().unwrap_or_else(|| "bind".into()), "options": options}),
        );
    }
    for h in &e.hooks {
        let at = match h.hook_name.as_str() {
            "prestart" | "createRuntime" | "createContainer" | "startContainer" | "poststart"
            | "poststop" => h.hook_name.as_str(),
            other => {
                return Err(cdi_err(
                    format!("{field}: hooks"),
                    format!("{other:?} is not a hook name"),
                ));
            }
        };
        let mut hook = json!({"path": h.path, "args": h.args, "env": h.env});
        if let Some(t) = h.timeout {
            hook["timeout"] = json!(t);
        }
        push(&mut spec["hooks"][at], hook);
    }
    Ok(())
}

fn push(at: &mut Value, v: Value) {
    if !at.is_array() {
        *at = json!([]);
    }
    if let Some(a) = at.as_array_mut() {
        a.push(v);
    }
}

/// Applies the CDI devices `names` (`vendor.com/class=name`), found in
/// `dirs`, to `spec`. An unknown device is an error naming it.
pub fn apply(spec: &mut Spec, names: &[String], dirs: &[PathBuf]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let reg = registry(dirs)?;
    let mut v = serde_json::to_value(&*spec).map_err(|e| cdi_err("spec", e.to_string()))?;
    let mut spec_edits_done: Vec<PathBuf> = Vec::new();
    for name in names {
        let found = reg.get(name).ok_or_else(|| {
            cdi_err(
                "CDI device",
                format!(
                    "{name:?} is not defined in {}",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )
        })?;
        // A spec's own edits once, however many of its devices are asked for.
        if !spec_edits_done.contains(&found.file) {
            apply_edits(&mut v, &found.spec_edits, &found.file)?;
            spec_edits_done.push(found.file.clone());
        }
        apply_edits(&mut v, &found.edits, &found.file)?;
    }
    *spec =
        serde_json::from_value(v).map_err(|e| cdi_err("spec after CDI edits", e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Spec {
        serde_json::from_value(json!({
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                        "env": ["PATH=/bin", "A=1"]},
            "root": {"path": "rootfs"},
            "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]}}
        }))
        .unwrap()
    }

    #[test]
    fn devices_from_yaml_and_json_specs_are_applied() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("vendor.yaml"),
            "cdiVersion: \"0.6.0\"\nkind: example.com/dev\ncontainerEdits:\n  env: [\"FROM_SPEC=1\"]\n\
             devices:\n- name: null0\n  containerEdits:\n    env: [\"A=2\"]\n    deviceNodes:\n\
             \x20   - path: /dev/xnull\n      hostPath: /dev/null\n    mounts:\n\
             \x20   - hostPath: /etc\n      containerPath: /host-etc\n      options: [rbind, ro]\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("other.json"),
            r#"{"cdiVersion":"0.5.0","kind":"example.com/gpu","devices":[{"name":"g0",
                "containerEdits":{"hooks":[{"hookName":"createContainer","path":"/bin/true"}]}}]}"#,
        )
        .unwrap();
        let mut s = base();
        apply(
            &mut s,
            &["example.com/dev=null0".into(), "example.com/gpu=g0".into()],
            &[d.path().to_path_buf()],
        )
        .unwrap();
        let v = serde_json::to_value(&s).unwrap();
        let env: Vec<&str> = v["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(env, ["PATH=/bin", "FROM_SPEC=1", "A=2"]);
        assert_eq!(v["linux"]["devices"][0]["path"], "/dev/xnull");
        assert_eq!(v["linux"]["devices"][0]["major"], 1);
        assert_eq!(v["linux"]["devices"][0]["minor"], 3);
        assert_eq!(v["linux"]["resources"]["devices"][1]["allow"], true);
        assert_eq!(v["mounts"][0]["destination"], "/host-etc");
        assert_eq!(v["hooks"]["createContainer"][0]["path"], "/bin/true");
    }

    #[test]
    fn unknown_devices_and_bad_specs_are_errors_naming_them() {
        let d = tempfile::tempdir().unwrap();
        let dirs = [d.path().to_path_buf()];
        let e = apply(&mut base(), &["example.com/dev=none".into()], &dirs).unwrap_err();
        assert!(e.to_string().contains("example.com/dev=none"), "{e}");
        std::fs::write(
            d.path().join("bad.yaml"),
            "cdiVersion: \"9.0.0\"\nkind: example.com/dev\ndevices: []\n",
        )
        .unwrap();
        let e = apply(&mut base(), &["example.com/dev=x".into()], &dirs).unwrap_err();
        assert!(e.to_string().contains("cdiVersion"), "{e}");
        std::fs::write(
            d.path().join("bad.yaml"),
            "cdiVersion: \"0.6.0\"\nkind: nokind\ndevices: []\n",
        )
        .unwrap();
        let e = apply(&mut base(), &["example.com/dev=x".into()], &dirs).unwrap_err();
        assert!(e.to_string().contains("vendor/class"), "{e}");
    }
}
