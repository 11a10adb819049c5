//! Running plugins: the environment and stdin the spec prescribes, replies
//! read with bounds and a timeout, lists chained through `prevResult`, and
//! the cache of ADD results that DEL and CHECK read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::config::{NetworkConfigList, PluginConfig};
use crate::error::{Error, Result, io_err};
use crate::result::{CniResult, parse_error, parse_result};
use crate::version::Version;

/// A reply larger than this is refused.
const MAX_REPLY: usize = 4 << 20;

/// What a plugin says of its versions (`VERSION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version it answered in.
    pub cni_version: String,
    /// Every version it supports.
    pub supported: Vec<String>,
}

/// One attachment of a container to a network.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: letters, digits, `_ . -`.
    pub container_id: String,
    /// `CNI_NETNS`: the pinned network namespace ("" once it is gone, for DEL).
    pub netns: PathBuf,
    /// `CNI_IFNAME` (say `eth0`).
    pub ifname: String,
    /// `CNI_ARGS` pairs (say `K8S_POD_NAME`); `IgnoreUnknown=1` goes first.
    pub args: Vec<(String, String)>,
    /// Runtime config for plugins that declare the capability
    /// (`portMappings`, `dns`, `bandwidth`, …).
    pub capability_args: Map<String, Value>,
}

/// What the cache holds of an attachment after its ADD.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The list as it was at ADD.
    pub list: NetworkConfigList,
    /// The attachment, netns path included.
    pub attachment: Attachment,
    /// The ADD's result; `None` while the ADD has not finished (or was
    /// cut off: the plugins may have allocated, so a DEL is owed).
    pub result: Option<CniResult>,
}

/// A plugin binary as last seen: path, size, modification time.
type BinaryKey = (PathBuf, u64, Option<std::time::SystemTime>);

/// Executes plugins from `bin_dirs`, keeping ADD results in `cache_dir`.
/// What a plugin answered to VERSION is kept (per binary, until it
/// changes), so an ADD runs each plugin once.
#[derive(Debug, Clone)]
pub struct Cni {
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    timeout: Duration,
    versions: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<BinaryKey, VersionInfo>>>,
}

fn command_name(c: &str) -> &'static str {
    match c {
        "ADD" => "ADD",
        "DEL" => "DEL",
        "CHECK" => "CHECK",
        "VERSION" => "VERSION",
        "STATUS" => "STATUS",
        "GC" => "GC",
        _ => "?",
    }
}

fn check_attachment(a: &Attachment) -> Result<()> {
    let id_ok = !a.container_id.is_empty()
        && a.container_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !id_ok {
        return Err(Error::Invalid {
            what: "container id",
            reason: format!("{:?}: letters, digits, _ . - only", a.container_id),
        });
    }
    let if_ok = !a.ifname.is_empty()
        && a.ifname.len() <= 15
        && a.ifname != "."
        && a.ifname != ".."
        && !a
            .ifname
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if !if_ok {
        return Err(Error::Invalid {
            what: "interface name",
            reason: format!("{:?}: 1 to 15 characters, no / : or spaces", a.ifname),
        });
    }
    for (k, v) in &a.args {
        if k.is_empty() || k.contains(['=', ';', '\0']) || v.contains([';', '\0']) {
            return Err(Error::Invalid {
                what: "CNI_ARGS",
                reason: format!("{k:?}={v:?}: no ; in keys or values, no = in keys"),
            });
        }
    }
    Ok(())
}

impl Cni {
    /// Plugins from `bin_dirs` (searched in order); ADD results kept in
    /// `cache_dir` (persistent: DEL after a restart reads it).
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            bin_dirs,
            cache_dir: cache_dir.into(),
            timeout: Duration::from_secs(60),
            versions: Default::default(),
        }
    }

    /// How long one plugin may run (60 s by default).
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn find(&self, kind: &str) -> Result<PathBuf> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::PluginNotFound {
                kind: kind.to_string(),
                dirs: self.bin_dirs.clone(),
            })
    }

    /// Runs plugin `kind` with `command`; its stdout on success.
    fn invoke(
        &self,
        kind: &str,
        command: &str,
        att: Option<&Attachment>,
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let cmd_name = command_name(command);
        let path = self.find(kind)?;
        let mut c = Command::new(&path);
        c.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("CNI_COMMAND", command)
            .env(
                "CNI_PATH",
                std::env::join_paths(&self.bin_dirs).unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(a) = att {
            let mut args = vec!["IgnoreUnknown=1".to_string()];
            args.extend(a.args.iter().map(|(k, v)| format!("{k}={v}")));
            c.env("CNI_CONTAINERID", &a.container_id)
                .env("CNI_NETNS", &a.netns)
                .env("CNI_IFNAME", &a.ifname)
                .env("CNI_ARGS", args.join(";"));
        }
        let mut child = c.spawn().map_err(io_err("starting CNI plugin", &path))?;
        let mut input = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(i) = input.as_mut() {
                let _ = i.write_all(&stdin);
            }
        });
        let reader = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(r) = r {
                    let _ = r.take(MAX_REPLY as u64 + 1).read_to_end(&mut out);
                }
                out
            })
        };
        let out = reader(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let err = reader(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::PluginFailed {
                        plugin: kind.to_string(),
                        command: cmd_name,
                        reason: format!("did not finish within {:?}", self.timeout),
                    });
                }
                Err(e) => return Err(io_err("waiting for CNI plugin", &path)(e)),
            }
        };
        let _ = writer.join();
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        if stdout.len() > MAX_REPLY {
            return Err(Error::BadReply {
                plugin: kind.to_string(),
                command: cmd_name,
                reason: format!("more than {MAX_REPLY} bytes"),
            });
        }
        if status.success() {
            return Ok(stdout);
        }
        if let Some((code, msg, details)) = parse_error(&stdout) {
            return Err(Error::Plugin {
                plugin: kind.to_string(),
                command: cmd_name,
                code,
                msg,
                details,
            });
        }
        let text = String::from_utf8_lossy(&stderr);
        let text: String = text
            .trim()
            .chars()
            .take(1000)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Err(Error::PluginFailed {
            plugin: kind.to_string(),
            command: cmd_name,
            reason: format!(
                "{status}{}",
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            ),
        })
    }

    /// `VERSION` of plugin `kind`, asked once per binary.
    pub fn version(&self, kind: &str) -> Result<VersionInfo> {
        let path = self.find(kind)?;
        let key = std::fs::metadata(&path)
            .ok()
            .map(|m| (path.clone(), m.len(), m.modified().ok()));
        if let Some(k) = &key
            && let Some(v) = self
                .versions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(k)
        {
            return Ok(v.clone());
        }
        let info = self.ask_version(kind)?;
        if let Some(k) = key {
            self.versions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(k, info.clone());
        }
        Ok(info)
    }

    fn ask_version(&self, kind: &str) -> Result<VersionInfo> {
        let out = self.invoke(
            kind,
            "VERSION",
            None,
            json!({"cniVersion": "1.0.0"}).to_string().into_bytes(),
        )?;
        let bad = |reason: String| Error::BadReply {
            plugin: kind.to_string(),
            command: "VERSION",
            reason,
        };
        let v: Value = serde_json::from_slice(&out).map_err(|e| bad(format!("not JSON: {e}")))?;
        let cni_version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let supported = v
            .get("supportedVersions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no supportedVersions list".into()))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("supportedVersions holds a non-string".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(VersionInfo {
            cni_version,
            supported,
        })
    }

    /// Every plugin of `list` must support its version.
    fn negotiate(&self, list: &NetworkConfigList) -> Result<()> {
        let mut seen: Vec<&str> = Vec::new();
        for p in &list.plugins {
            if seen.contains(&p.kind.as_str()) {
                continue;
            }
            seen.push(&p.kind);
            let info = self.version(&p.kind)?;
            let ok = info
                .supported
                .iter()
                .any(|s| Version::parse(s) == Some(list.version));
            if !ok {
                return Err(Error::UnsupportedVersion {
                    plugin: p.kind.clone(),
                    network: list.name.clone(),
                    wanted: list.cni_version.clone(),
                    supported: info.supported,
                });
            }
        }
        Ok(())
    }

    /// The stdin of one plugin of `list`.
    fn plugin_conf(
        list: &NetworkConfigList,
        p: &PluginConfig,
        prev: Option<&Value>,
        att: &Attachment,
    ) -> Vec<u8> {
        let mut m = p.raw.clone();
        m.insert("name".into(), json!(list.name));
        m.insert("cniVersion".into(), json!(list.cni_version));
        if let Some(prev) = prev {
            m.insert("prevResult".into(), prev.clone());
        } else {
            m.remove("prevResult");
        }
        let runtime: Map<String, Value> = att
            .capability_args
            .iter()
            .filter(|(k, _)| p.capabilities.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if runtime.is_empty() {
            m.remove("runtimeConfig");
        } else {
            m.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        Value::Object(m).to_string().into_bytes()
    }

    fn cache_path(&self, network: &str, att: &Attachment) -> PathBuf {
        self.cache_dir.join(format!(
            "{network}-{}-{}.json",
            att.container_id, att.ifname
        ))
    }

    /// ADD of `att` to every plugin of `list`, in order; the last result,
    /// which is also cached. A failed ADD is undone with a DEL.
    pub fn add(&self, list: &NetworkConfigList, att: &Attachment) -> Result<CniResult> {
        check_attachment(att)?;
        self.negotiate(list)?;
        // The intent first: if this process dies mid-ADD, what the plugins
        // allocated can still be found and released (see `pending`).
        self.save_cache(list, att, None)?;
        let mut prev: Option<CniResult> = None;
        for p in &list.plugins {
            let conf = Self::plugin_conf(list, p, prev.as_ref().map(|r| &r.raw), att);
            let out = match self.invoke(&p.kind, "ADD", Some(att), conf) {
                Ok(o) => o,
                Err(e) => {
                    let _ = self.del_list(list, att, prev.as_ref().map(|r| &r.raw));
                    self.drop_cache(&list.name, att);
                    return Err(e);
                }
            };
            match parse_result(&out) {
                Ok(r) => prev = Some(r),
                Err(reason) => {
                    let _ = self.del_list(list, att, prev.as_ref().map(|r| &r.raw));
                    self.drop_cache(&list.name, att);
                    return Err(Error::BadReply {
                        plugin: p.kind.clone(),
                        command: "ADD",
                        reason,
                    });
                }
            }
        }
        let Some(result) = prev else {
            self.drop_cache(&list.name, att);
            return Err(Error::Invalid {
                what: "network",
                reason: format!("{} has no plugins", list.name),
            });
        };
        if let Err(e) = self.save_cache(list, att, Some(&result)) {
            let _ = self.del_list(list, att, Some(&result.raw));
            self.drop_cache(&list.name, att);
            return Err(e);
        }
        Ok(result)
    }

    fn drop_cache(&self, network: &str, att: &Attachment) {
        let _ = std::fs::remove_file(self.cache_path(network, att));
    }

    /// Every attachment the cache holds, finished or not, as (network,
    /// attachment): what a runtime checks against its own records after a
    /// restart, to DEL what it no longer knows. Cache writes that were cut
    /// off (temp files) are removed: call it before this process's first ADD.
    pub fn pending(&self) -> Vec<(String, Attachment)> {
        let Ok(entries) = std::fs::read_dir(&self.cache_dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(&p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Some(v) = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            else {
                continue;
            };
            let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            let (Some(network), Some(id), Some(ifname)) =
                (field("networkName"), field("containerId"), field("ifName"))
            else {
                continue;
            };
            out.push((
                network,
                Attachment {
                    container_id: id,
                    netns: field("netns").map(PathBuf::from).unwrap_or_default(),
                    ifname,
                    ..Default::default()
                },
            ));
        }
        out
    }

    fn save_cache(
        &self,
        list: &NetworkConfigList,
        att: &Attachment,
        r: Option<&CniResult>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.cache_dir).map_err(io_err("creating", &self.cache_dir))?;
        let rec = json!({
            "kind": "cniCacheV1",
            "containerId": att.container_id,
            "ifName": att.ifname,
            "networkName": list.name,
            "netns": att.netns,
            "config": list.to_json(),
            "cniArgs": att.args,
            "capabilityArgs": att.capability_args,
            "result": r.map(|r| &r.raw),
        });
        let path = self.cache_path(&list.name, att);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, rec.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_err("writing the CNI cache", &path))
    }

    /// What the cache has of `att` on `network`.
    pub fn cached(&self, network: &str, att: &Attachment) -> Option<Cached> {
        let path = self.cache_path(network, att);
        let bytes = std::fs::read(&path).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        let list =
            crate::config::parse_list(v.get("config")?.to_string().as_bytes(), &path).ok()?;
        let result = v
            .get("result")
            .filter(|r| !r.is_null())
            .and_then(|r| parse_result(r.to_string().as_bytes()).ok());
        let args = v
            .get("cniArgs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        Some((
                            p.get(0)?.as_str()?.to_string(),
                            p.get(1)?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Cached {
            list,
            attachment: Attachment {
                container_id: att.container_id.clone(),
                netns: v
                    .get("netns")
                    .and_then(Value::as_str)
                    .map(PathBuf::from)
                    .unwrap_or_default(),
                ifname: att.ifname.clone(),
                args,
                capability_args: v
                    .get("capabilityArgs")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            },
            result,
        })
    }

    fn del_list(
        &self,
        list: &NetworkConfigList,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> Result<()> {
        // prevResult on DEL exists from CNI 0.4.0 on.
        let prev = prev.filter(|_| list.version >= Version::V0_4_0);
        let mut first_err = None;
        for p in list.plugins.iter().rev() {
            let conf = Self::plugin_conf(list, p, prev, att);
            if let Err(e) = self.invoke(&p.kind, "DEL", Some(att), conf) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// DEL of `att` from every plugin of `list`, in reverse, with the cached
    /// ADD result as `prevResult`; the cache entry goes once DEL succeeded.
    /// With `list` `None`, the list cached at ADD is used (the conf dir may
    /// have changed since). Nothing cached and no list: nothing to do.
    pub fn del(
        &self,
        list: Option<&NetworkConfigList>,
        network: &str,
        att: &Attachment,
    ) -> Result<()> {
        check_attachment(att)?;
        let cached = self.cached(network, att);
        // Without args of its own, DEL gets those of the ADD (portmap finds
        // its rules through the port mappings).
        let merged;
        let att = match &cached {
            Some(c) if att.args.is_empty() && att.capability_args.is_empty() => {
                merged = Attachment {
                    netns: att.netns.clone(),
                    ..c.attachment.clone()
                };
                &merged
            }
            _ => att,
        };
        let prev = cached
            .as_ref()
            .and_then(|c| c.result.as_ref())
            .map(|r| &r.raw);
        let (list, prev) = match (list, &cached) {
            (Some(l), _) => (l, prev),
            (None, Some(c)) => (&c.list, prev),
            (None, None) => return Ok(()),
        };
        self.del_list(list, att, prev)?;
        let path = self.cache_path(network, att);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing the CNI cache entry", &path)(e)),
        }
    }

    /// CHECK of `att` (CNI 0.4.0 and later) against the cached ADD result.
    pub fn check(&self, list: &NetworkConfigList, att: &Attachment) -> Result<()> {
        check_attachment(att)?;
        if list.version < Version::V0_4_0 {
            return Err(Error::NotSupported {
                operation: "CHECK",
                network: list.name.clone(),
                reason: format!("its cniVersion {} is older than 0.4.0", list.cni_version),
            });
        }
        if list.disable_check {
            return Ok(());
        }
        self.negotiate(list)?;
        let result = self
            .cached(&list.name, att)
            .and_then(|c| c.result)
            .ok_or_else(|| Error::Invalid {
                what: "CHECK",
                reason: format!(
                    "no cached ADD result of {} on {}",
                    att.container_id, list.name
                ),
            })?;
        for p in &list.plugins {
            let conf = Self::plugin_conf(list, p, Some(&result.raw), att);
            self.invoke(&p.kind, "CHECK", Some(att), conf)?;
        }
        Ok(())
    }

    /// The list's version and every plugin's must reach 1.1.0 for `op`.
    fn needs_1_1(&self, list: &NetworkConfigList, op: &'static str) -> Result<()> {
        if list.version < Version::V1_1_0 {
            return Err(Error::NotSupported {
                operation: op,
                network: list.name.clone(),
                reason: format!("its cniVersion {} is older than 1.1.0", list.cni_version),
            });
        }
        self.negotiate(list)
    }

    /// STATUS (CNI 1.1.0): whether every plugin is ready for ADDs.
    pub fn status(&self, list: &NetworkConfigList) -> Result<()> {
        self.needs_1_1(list, "STATUS")?;
        for p in &list.plugins {
            let conf = Self::plugin_conf(list, p, None, &Attachment::default());
            self.invoke(&p.kind, "STATUS", None, conf)?;
        }
        Ok(())
    }

    /// GC (CNI 1.1.0): plugins release whatever belongs to no attachment
    /// in `valid` (container id, interface name).
    pub fn gc(&self, list: &NetworkConfigList, valid: &[(String, String)]) -> Result<()> {
        if list.disable_gc {
            return Ok(());
        }
        self.needs_1_1(list, "GC")?;
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
            .collect();
        for p in &list.plugins {
            let mut conf: Value =
                serde_json::from_slice(&Self::plugin_conf(list, p, None, &Attachment::default()))
                    .unwrap_or_default();
            conf["cni.dev/valid-attachments"] = Value::Array(attachments.clone());
            self.invoke(&p.kind, "GC", None, conf.to_string().into_bytes())?;
        }
        Ok(())
    }

    /// The cache dir (for listing attachments).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_add_cut_off_is_found_pending_and_its_temp_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let cni = Cni::new(Vec::new(), dir.path().join("cache"));
        let list = crate::config::parse_list(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#,
            Path::new("10-n.conflist"),
        )
        .unwrap();
        let att = Attachment {
            container_id: "pod1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            ..Default::default()
        };
        // What ADD writes first; then a write cut off before its rename.
        cni.save_cache(&list, &att, None).unwrap();
        let stray = dir.path().join("cache/n-pod2-eth0.tmp");
        std::fs::write(&stray, "{").unwrap();
        let pending = cni.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, "n");
        assert_eq!(pending[0].1.container_id, "pod1");
        assert_eq!(pending[0].1.netns, PathBuf::from("/run/netns/x"));
        assert!(!stray.exists());
        let cached = cni.cached("n", &att).expect("cached");
        assert!(cached.result.is_none());
    }

    #[test]
    fn attachments_are_checked() {
        let mut a = Attachment {
            container_id: "abc".into(),
            ifname: "eth0".into(),
            ..Default::default()
        };
        assert!(check_attachment(&a).is_ok());
        a.ifname = "a-very-long-interface".into();
        assert!(check_attachment(&a).is_err());
        a.ifname = "eth0".into();
        a.container_id = "../x".into();
        assert!(check_attachment(&a).is_err());
        a.container_id = "x".into();
        a.args = vec![("K".into(), "v;EVIL=1".into())];
        assert!(check_attachment(&a).is_err());
    }

    #[test]
    fn plugin_stdin_has_name_version_prev_result_and_capabilities() {
        let list = crate::config::parse_list(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
            Path::new("x"),
        )
        .unwrap();
        let mut att = Attachment::default();
        att.capability_args
            .insert("portMappings".into(), json!([{"hostPort": 8080}]));
        att.capability_args.insert("bandwidth".into(), json!({}));
        let c: Value = serde_json::from_slice(&Cni::plugin_conf(
            &list,
            &list.plugins[1],
            Some(&json!({"x": 1})),
            &att,
        ))
        .unwrap();
        assert_eq!(c["name"], "n");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["prevResult"]["x"], 1);
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(c["runtimeConfig"].get("bandwidth").is_none());
        let b: Value =
            serde_json::from_slice(&Cni::plugin_conf(&list, &list.plugins[0], None, &att)).unwrap();
        assert!(b.get("runtimeConfig").is_none());
        assert!(b.get("prevResult").is_none());
    }
}
