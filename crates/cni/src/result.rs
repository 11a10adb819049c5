//! Plugin replies: results of ADD (CNI 0.3.0 to 1.1.0, and the `ip4`/`ip6`
//! form of 0.1.0/0.2.0) and error replies. Nothing in them is trusted:
//! addresses must parse, interface indexes must name an interface.

use std::net::IpAddr;

use serde_json::Value;

/// An interface a plugin made or knows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// The netns path it is in ("" for the host's).
    pub sandbox: String,
}

/// An address given to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`].
    pub interface: Option<usize>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination, `addr/prefix`.
    pub dst: String,
    /// Gateway, if any.
    pub gw: Option<IpAddr>,
}

/// DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// `nameservers`.
    pub nameservers: Vec<String>,
    /// `domain`.
    pub domain: String,
    /// `search`.
    pub search: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

/// The result of an ADD (of the last plugin of a list).
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// `cniVersion`.
    pub cni_version: String,
    /// `interfaces`.
    pub interfaces: Vec<Interface>,
    /// `ips`.
    pub ips: Vec<IpConfig>,
    /// `routes`.
    pub routes: Vec<Route>,
    /// `dns`.
    pub dns: Dns,
    /// The reply as given: the next plugin's `prevResult`, the cache's record.
    pub raw: Value,
}

impl CniResult {
    /// The addresses of the pod's interfaces: those in a sandbox, or all
    /// when no interface is named.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(i) => self
                    .interfaces
                    .get(i)
                    .is_some_and(|f| !f.sandbox.is_empty()),
                None => true,
            })
            .map(|ip| ip.address)
            .collect()
    }
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}: not a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("{what}: not a list")),
    }
}

fn text(v: Option<&Value>, what: &str) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{what}: not a string")),
    }
}

/// `addr/prefix`.
fn cidr(s: &str, what: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{what}: {s:?} is not addr/prefix"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{what}: {a:?} is not an IP address"))?;
    let prefix: u8 = p
        .parse()
        .map_err(|_| format!("{what}: {p:?} is not a prefix length"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("{what}: prefix /{prefix} is longer than {max}"));
    }
    Ok((addr, prefix))
}

fn ip(v: Option<&Value>, what: &str) -> Result<Option<IpAddr>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{what}: {s:?} is not an IP address")),
        Some(_) => Err(format!("{what}: not a string")),
    }
}

fn routes(v: Option<&Value>, what: &str) -> Result<Vec<Route>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let a = v.as_array().ok_or_else(|| format!("{what}: not a list"))?;
    a.iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("{what}[{i}]");
            let dst = text(r.get("dst"), &format!("{at}.dst"))?;
            cidr(&dst, &format!("{at}.dst"))?;
            Ok(Route {
                dst,
                gw: ip(r.get("gw"), &format!("{at}.gw"))?,
            })
        })
        .collect()
}

/// Parses an ADD result.
pub fn parse_result(bytes: &[u8]) -> Result<CniResult, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let cni_version = text(obj.get("cniVersion"), "cniVersion")?;
    let version = crate::Version::parse(&cni_version)
        .ok_or_else(|| format!("cniVersion: {cni_version:?} is not a version"))?;
    let mut interfaces = Vec::new();
    let mut ips = Vec::new();
    let mut all_routes = Vec::new();
    if version < crate::Version(0, 3, 0) {
        for key in ["ip4", "ip6"] {
            let Some(cfg) = obj.get(key).filter(|x| !x.is_null()) else {
                continue;
            };
            let (address, prefix) = cidr(&text(cfg.get("ip"), &format!("{key}.ip"))?, key)?;
            ips.push(IpConfig {
                address,
                prefix,
                gateway: ip(cfg.get("gateway"), &format!("{key}.gateway"))?,
                interface: None,
            });
            all_routes.extend(routes(cfg.get("routes"), &format!("{key}.routes"))?);
        }
    } else {
        if let Some(list) = obj.get("interfaces").filter(|x| !x.is_null()) {
            let a = list.as_array().ok_or("interfaces: not a list")?;
            for (i, f) in a.iter().enumerate() {
                interfaces.push(Interface {
                    name: text(f.get("name"), &format!("interfaces[{i}].name"))?,
                    mac: text(f.get("mac"), &format!("interfaces[{i}].mac"))?,
                    sandbox: text(f.get("sandbox"), &format!("interfaces[{i}].sandbox"))?,
                });
            }
        }
        if let Some(list) = obj.get("ips").filter(|x| !x.is_null()) {
            let a = list.as_array().ok_or("ips: not a list")?;
            for (i, x) in a.iter().enumerate() {
                let at = format!("ips[{i}]");
                let (address, prefix) =
                    cidr(&text(x.get("address"), &format!("{at}.address"))?, &at)?;
                let interface = match x.get("interface") {
                    None | Some(Value::Null) => None,
                    Some(n) => {
                        let n = n
                            .as_u64()
                            .and_then(|n| usize::try_from(n).ok())
                            .ok_or_else(|| format!("{at}.interface: not an index"))?;
                        if n >= interfaces.len() {
                            return Err(format!(
                                "{at}.interface: {n}, but there are {} interfaces",
                                interfaces.len()
                            ));
                        }
                        Some(n)
                    }
                };
                ips.push(IpConfig {
                    address,
                    prefix,
                    gateway: ip(x.get("gateway"), &format!("{at}.gateway"))?,
                    interface,
                });
            }
        }
        all_routes = routes(obj.get("routes"), "routes")?;
    }
    let dns = match obj.get("dns").filter(|x| !x.is_null()) {
        None => Dns::default(),
        Some(d) => Dns {
            nameservers: strings(d.get("nameservers"), "dns.nameservers")?,
            domain: text(d.get("domain"), "dns.domain")?,
            search: strings(d.get("search"), "dns.search")?,
            options: strings(d.get("options"), "dns.options")?,
        },
    };
    Ok(CniResult {
        cni_version,
        interfaces,
        ips,
        routes: all_routes,
        dns,
        raw: v,
    })
}

/// A plugin's error reply: code, msg, details.
pub fn parse_error(bytes: &[u8]) -> Option<(u64, String, String)> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let code = v.get("code")?.as_u64()?;
    let msg = v
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let details = v
        .get("details")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((code, msg, details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_of_each_version_parse() {
        let r = parse_result(
            br#"{"cniVersion":"1.0.0",
              "interfaces":[{"name":"cni0","mac":"aa"},{"name":"eth0","mac":"bb","sandbox":"/run/netns/x"}],
              "ips":[{"address":"10.88.0.5/16","gateway":"10.88.0.1","interface":1}],
              "routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.0.0.10"]}}"#,
        )
        .unwrap();
        assert_eq!(r.pod_ips(), vec!["10.88.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.ips[0].prefix, 16);
        assert_eq!(r.dns.nameservers, ["10.0.0.10"]);
        let old = parse_result(
            br#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.2/24","gateway":"10.1.0.1"}}"#,
        )
        .unwrap();
        assert_eq!(old.pod_ips(), vec!["10.1.0.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn malformed_results_are_refused_naming_the_field() {
        for (doc, want) in [
            (
                &br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]}"#[..],
                "ips[0]",
            ),
            (
                br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/33"}]}"#,
                "/33",
            ),
            (
                br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":2}]}"#,
                "interface: 2",
            ),
            (
                br#"{"cniVersion":"1.0.0","routes":[{"dst":"x"}]}"#,
                "routes[0].dst",
            ),
            (br#"{"cniVersion":7}"#, "cniVersion"),
            (b"nope", "not JSON"),
        ] {
            let e = parse_result(doc).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
    }

    #[test]
    fn error_replies_parse() {
        assert_eq!(
            parse_error(br#"{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"d"}"#),
            Some((7, "bad".into(), "d".into()))
        );
        assert_eq!(parse_error(b"{}"), None);
    }
}
