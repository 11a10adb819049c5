//! Network configs: lists (`*.conflist`: `name`, `cniVersion`, `plugins`)
//! and single plugin configs (`*.conf`, `*.json`), which become a list of
//! one. A plugin's `type` names its binary, so it must be a plain file name.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result, io_err};
use crate::version::Version;

/// A config file larger than this is refused.
const MAX_CONFIG: u64 = 1 << 20;

/// One plugin of a list, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// `type`: the plugin binary's name.
    pub kind: String,
    /// The capabilities it declares (`capabilities: {"portMappings": true}`).
    pub capabilities: Vec<String>,
    /// The whole object, as given.
    pub raw: Map<String, Value>,
}

/// A network: the plugins run in order for ADD, in reverse for DEL.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// `name`.
    pub name: String,
    /// `cniVersion`, as written.
    pub cni_version: String,
    /// It, parsed.
    pub version: Version,
    /// `disableCheck`: CHECK succeeds without running the plugins.
    pub disable_check: bool,
    /// `disableGC`: GC does nothing.
    pub disable_gc: bool,
    /// `plugins`.
    pub plugins: Vec<PluginConfig>,
    /// The file it came from (empty when parsed from memory).
    pub source: PathBuf,
}

impl NetworkConfigList {
    /// The list as a `*.conflist` document.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "disableGC": self.disable_gc,
            "plugins": self.plugins.iter().map(|p| Value::Object(p.raw.clone())).collect::<Vec<_>>(),
        })
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether `s` is a valid network name (as libcni checks it).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

fn plugin(path: &Path, at: &str, v: &Value) -> Result<PluginConfig> {
    let Some(obj) = v.as_object() else {
        return Err(bad(path, format!("{at}: not an object")));
    };
    let kind = match obj.get("type") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(bad(path, format!("{at}.type: not a non-empty string"))),
        None => return Err(bad(path, format!("{at}.type: missing"))),
    };
    if kind.contains('/') || kind == "." || kind == ".." || kind.contains('\0') {
        return Err(bad(
            path,
            format!("{at}.type: {kind:?} is not a plugin name (no paths)"),
        ));
    }
    let capabilities = match obj.get("capabilities") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| v.as_bool() == Some(true))
            .map(|(k, _)| k.clone())
            .collect(),
        Some(_) => return Err(bad(path, format!("{at}.capabilities: not an object"))),
    };
    Ok(PluginConfig {
        kind,
        capabilities,
        raw: obj.clone(),
    })
}

fn name_and_version(path: &Path, obj: &Map<String, Value>) -> Result<(String, String, Version)> {
    let name = match obj.get("name") {
        Some(Value::String(s)) if valid_name(s) => s.clone(),
        Some(Value::String(s)) => {
            return Err(bad(
                path,
                format!("name: {s:?} is not a network name (letters, digits, - _ .)"),
            ));
        }
        Some(_) => return Err(bad(path, "name: not a string")),
        None => return Err(bad(path, "name: missing")),
    };
    let cni_version = match obj.get("cniVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad(path, "cniVersion: not a string")),
        // The spec's default for configs that omit it.
        None => "0.1.0".to_string(),
    };
    let version = Version::parse(&cni_version).ok_or_else(|| {
        bad(
            path,
            format!("cniVersion: {cni_version:?} is not a version"),
        )
    })?;
    Ok((name, cni_version, version))
}

fn flag(path: &Path, obj: &Map<String, Value>, key: &str) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // libcni also takes the strings "true" and "false".
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(bad(path, format!("{key}: not a boolean"))),
    }
}

/// Parses a config list (`*.conflist`).
pub fn parse_list(bytes: &[u8], path: &Path) -> Result<NetworkConfigList> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(path, format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(bad(path, "not a JSON object"));
    };
    let (name, cni_version, version) = name_and_version(path, obj)?;
    let plugins = match obj.get("plugins") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, p)| plugin(path, &format!("plugins[{i}]"), p))
            .collect::<Result<Vec<_>>>()?,
        Some(Value::Array(_)) => return Err(bad(path, "plugins: empty")),
        Some(_) => return Err(bad(path, "plugins: not an array")),
        None => return Err(bad(path, "plugins: missing")),
    };
    Ok(NetworkConfigList {
        name,
        cni_version,
        version,
        disable_check: flag(path, obj, "disableCheck")?,
        disable_gc: flag(path, obj, "disableGC")?,
        plugins,
        source: path.to_path_buf(),
    })
}

/// Parses a single plugin config (`*.conf`, `*.json`) as a list of one.
pub fn parse_conf(bytes: &[u8], path: &Path) -> Result<NetworkConfigList> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(path, format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(bad(path, "not a JSON object"));
    };
    let (name, cni_version, version) = name_and_version(path, obj)?;
    let p = plugin(path, "config", &v)?;
    Ok(NetworkConfigList {
        name,
        cni_version,
        version,
        disable_check: false,
        disable_gc: false,
        plugins: vec![p],
        source: path.to_path_buf(),
    })
}

/// Reads one config file, by its extension.
pub fn load_file(path: &Path) -> Result<NetworkConfigList> {
    let md = std::fs::metadata(path).map_err(io_err("reading", path))?;
    if md.len() > MAX_CONFIG {
        return Err(bad(path, format!("larger than {MAX_CONFIG} bytes")));
    }
    let bytes = std::fs::read(path).map_err(io_err("reading", path))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("conflist") => parse_list(&bytes, path),
        _ => parse_conf(&bytes, path),
    }
}

/// Every network config in `dir` (`*.conflist`, `*.conf`, `*.json`), in
/// lexical order of file names, the one runtimes take as the default first;
/// and the files that could not be used, with why. A missing dir has none.
pub fn load_dir(dir: &Path) -> Result<(Vec<NetworkConfigList>, Vec<Error>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io_err("reading", dir)(e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            ) && p.is_file()
        })
        .collect();
    files.sort();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for f in files {
        match load_file(&f) {
            Ok(l) => ok.push(l),
            Err(e) => bad.push(e),
        }
    }
    Ok((ok, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.conflist")
    }

    #[test]
    fn lists_and_single_configs_parse() {
        let l = parse_list(
            br#"{"cniVersion":"1.0.0","name":"pods","plugins":[
                {"type":"bridge","bridge":"cni0"},
                {"type":"portmap","capabilities":{"portMappings":true,"other":false}}]}"#,
            p(),
        )
        .unwrap();
        assert_eq!(l.name, "pods");
        assert_eq!(l.version, Version(1, 0, 0));
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugins[1].capabilities, ["portMappings"]);
        let c = parse_conf(
            br#"{"cniVersion":"0.4.0","name":"one","type":"loopback"}"#,
            Path::new("x.conf"),
        )
        .unwrap();
        assert_eq!(c.plugins[0].kind, "loopback");
    }

    #[test]
    fn bad_configs_name_what_is_wrong() {
        for (doc, want) in [
            (&br#"[]"#[..], "not a JSON object"),
            (br#"{"name":"n","cniVersion":"1.0.0"}"#, "plugins: missing"),
            (
                br#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
                "plugins: empty",
            ),
            (br#"{"name":"bad name","plugins":[{"type":"x"}]}"#, "name:"),
            (
                br#"{"name":"n","cniVersion":"x","plugins":[{"type":"x"}]}"#,
                "cniVersion",
            ),
            (
                br#"{"name":"n","plugins":[{"type":"../../bin/sh"}]}"#,
                "no paths",
            ),
            (
                br#"{"name":"n","plugins":[{"bridge":"x"}]}"#,
                "plugins[0].type: missing",
            ),
            (
                br#"{"name":"n","plugins":[{"type":"x"}],"disableCheck":3}"#,
                "disableCheck",
            ),
            (b"\xff", "not JSON"),
        ] {
            let e = parse_list(doc, p()).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
            assert!(e.starts_with("test.conflist: "), "{e}");
        }
    }

    #[test]
    fn a_dir_is_read_in_order_and_bad_files_are_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("20-b.conflist"),
            br#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("10-a.conf"),
            br#"{"cniVersion":"1.0.0","name":"a","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("05-broken.conflist"), b"{").unwrap();
        std::fs::write(d.path().join("README"), b"not a config").unwrap();
        let (ok, bad) = load_dir(d.path()).unwrap();
        assert_eq!(
            ok.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().contains("05-broken"), "{}", bad[0]);
        let (none, _) = load_dir(&d.path().join("missing")).unwrap();
        assert!(none.is_empty());
    }
}
