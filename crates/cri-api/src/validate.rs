//! The CRI's own rules for a request, checked before a runtime acts on it.
//!
//! What the CRI says a request must hold (a pod's metadata, a container's
//! image, an exec's command), what its enums and ranges allow, and the
//! combinations its comments say a runtime must refuse (`run_as_group`
//! without a user, a terminal with its own stderr). Nothing here looks at
//! the host: a rule that depends on it (a device node, a mount's
//! propagation, a capability the kernel has) stays with the runtime.
//!
//! Every [`Invalid`] names the field by its path in the request, as the
//! proto spells it (`config.linux.security_context.run_as_user`,
//! `config.mounts[2].container_path`), and quotes what it was given with
//! escapes, so the message is printable whatever the client sent.
//!
//! ```
//! use cri_api::v1::{ExecSyncRequest, RunPodSandboxRequest};
//! use cri_api::validate::Validate;
//!
//! let e = RunPodSandboxRequest::default().validate().unwrap_err();
//! assert_eq!(e.to_string(), "config: missing");
//!
//! let exec = ExecSyncRequest { container_id: "c1".into(), cmd: vec!["true".into()], timeout: -1 };
//! assert_eq!(exec.validate().unwrap_err().field, "timeout");
//! ```

use crate::v1::*;

/// A request field that is missing or holds what the CRI does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field's path in the request (`config.metadata.name`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

impl From<Invalid> for tonic::Status {
    fn from(e: Invalid) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// A CRI request checked against the CRI's rules.
pub trait Validate {
    /// `Ok` when the request is one the CRI allows; else the first field
    /// found wrong.
    fn validate(&self) -> Result<(), Invalid>;
}

type Checked = Result<(), Invalid>;

fn bad(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn required(field: &str, value: &str) -> Checked {
    if value.trim().is_empty() {
        return Err(bad(field, "empty"));
    }
    Ok(())
}

fn present<'a, T>(field: &str, value: &'a Option<T>) -> Result<&'a T, Invalid> {
    value.as_ref().ok_or_else(|| bad(field, "missing"))
}

/// An enum field holding a value its enum has.
fn known<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Invalid> {
    E::try_from(value).map_err(|_| bad(field, format!("unknown value {value}")))
}

fn absolute(field: &str, path: &str) -> Checked {
    if !path.starts_with('/') {
        return Err(bad(field, format!("{path:?} is not an absolute path")));
    }
    Ok(())
}

fn group_ids(field: &str, groups: &[i64]) -> Checked {
    for (i, g) in groups.iter().enumerate() {
        if u32::try_from(*g).is_err() {
            return Err(bad(
                format!("{field}[{i}]"),
                format!("{g} is not a group id"),
            ));
        }
    }
    Ok(())
}

fn user_ids(
    at: &str,
    user: Option<&Int64Value>,
    username: &str,
    group: Option<&Int64Value>,
) -> Checked {
    if let Some(u) = user
        && u32::try_from(u.value).is_err()
    {
        return Err(bad(
            format!("{at}.run_as_user"),
            format!("{} is not a user id", u.value),
        ));
    }
    if let Some(g) = group {
        if u32::try_from(g.value).is_err() {
            return Err(bad(
                format!("{at}.run_as_group"),
                format!("{} is not a group id", g.value),
            ));
        }
        if user.is_none() && username.is_empty() {
            return Err(bad(
                format!("{at}.run_as_group"),
                "given without run_as_user or run_as_username",
            ));
        }
    }
    Ok(())
}

fn profile(field: &str, p: Option<&SecurityProfile>) -> Checked {
    let Some(p) = p else { return Ok(()) };
    let kind: security_profile::ProfileType =
        known(&format!("{field}.profile_type"), p.profile_type)?;
    if kind == security_profile::ProfileType::Localhost && p.localhost_ref.is_empty() {
        return Err(bad(
            format!("{field}.localhost_ref"),
            "empty, and the profile type is Localhost",
        ));
    }
    Ok(())
}

/// The deprecated string form of a seccomp or AppArmor profile.
fn profile_path(field: &str, value: &str, defaults: &[&str]) -> Checked {
    if value.is_empty()
        || value == "unconfined"
        || defaults.contains(&value)
        || value
            .strip_prefix("localhost/")
            .is_some_and(|p| !p.is_empty())
    {
        return Ok(());
    }
    Err(bad(
        field,
        format!(
            "{value:?} is not {}, unconfined or localhost/<profile>",
            defaults.join(", ")
        ),
    ))
}

fn id_mappings(field: &str, maps: &[IdMapping]) -> Checked {
    for (i, m) in maps.iter().enumerate() {
        if m.length == 0 {
            return Err(bad(format!("{field}[{i}].length"), "0"));
        }
        let end = |start: u32| u64::from(start) + u64::from(m.length) > 1 << 32;
        if end(m.host_id) || end(m.container_id) {
            return Err(bad(
                format!("{field}[{i}]"),
                "runs past the last id (4294967295)",
            ));
        }
    }
    Ok(())
}

/// Namespace modes. TARGET names a container whose pid namespace to join,
/// so only a container's pid mode has it.
fn namespaces(at: &str, ns: Option<&NamespaceOption>, of_pod: bool) -> Checked {
    let Some(ns) = ns else { return Ok(()) };
    let at = format!("{at}.namespace_options");
    for (name, mode) in [("network", ns.network), ("pid", ns.pid), ("ipc", ns.ipc)] {
        let field = format!("{at}.{name}");
        let mode: NamespaceMode = known(&field, mode)?;
        match mode {
            NamespaceMode::Target if of_pod || name != "pid" => {
                return Err(bad(
                    field,
                    "TARGET is for a container's pid namespace alone",
                ));
            }
            NamespaceMode::Target if ns.target_id.is_empty() => {
                return Err(bad(
                    format!("{at}.target_id"),
                    "empty, and the pid mode is TARGET",
                ));
            }
            _ => {}
        }
    }
    if let Some(u) = &ns.userns_options {
        let field = format!("{at}.userns_options");
        let mode: NamespaceMode = known(&format!("{field}.mode"), u.mode)?;
        match mode {
            NamespaceMode::Pod => {
                if u.uids.is_empty() || u.gids.is_empty() {
                    return Err(bad(
                        format!(
                            "{field}.{}",
                            if u.uids.is_empty() { "uids" } else { "gids" }
                        ),
                        "empty, and the mode is POD (a user namespace of the pod's own)",
                    ));
                }
            }
            NamespaceMode::Node => {
                if !u.uids.is_empty() || !u.gids.is_empty() {
                    return Err(bad(
                        format!("{field}.uids"),
                        "mappings given, and the mode is NODE (the host's user namespace)",
                    ));
                }
            }
            other => {
                return Err(bad(
                    format!("{field}.mode"),
                    format!("{}: a user namespace is POD or NODE", other.as_str_name()),
                ));
            }
        }
        id_mappings(&format!("{field}.uids"), &u.uids)?;
        id_mappings(&format!("{field}.gids"), &u.gids)?;
    }
    Ok(())
}

/// The ranges the kernel's cgroup files take.
fn resources(at: &str, r: Option<&LinuxContainerResources>) -> Checked {
    let Some(r) = r else { return Ok(()) };
    let f = |name: &str| format!("{at}.{name}");
    if r.cpu_period != 0 && !(1_000..=1_000_000).contains(&r.cpu_period) {
        return Err(bad(
            f("cpu_period"),
            format!("{} µs is outside 1000 to 1000000", r.cpu_period),
        ));
    }
    if r.cpu_quota < -1 || (1..1_000).contains(&r.cpu_quota) {
        return Err(bad(
            f("cpu_quota"),
            format!(
                "{}: -1 (no limit), 0 (unset) or at least 1000 µs",
                r.cpu_quota
            ),
        ));
    }
    if r.cpu_shares < 0 {
        return Err(bad(
            f("cpu_shares"),
            format!("{} is negative", r.cpu_shares),
        ));
    }
    if r.memory_limit_in_bytes < 0 {
        return Err(bad(
            f("memory_limit_in_bytes"),
            format!("{} is negative", r.memory_limit_in_bytes),
        ));
    }
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(bad(
            f("memory_swap_limit_in_bytes"),
            format!("{}: -1 (no limit) or a size", r.memory_swap_limit_in_bytes),
        ));
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(bad(
            f("oom_score_adj"),
            format!("{} is outside -1000 to 1000", r.oom_score_adj),
        ));
    }
    for (name, list) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        cpu_list(&f(name), list)?;
    }
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        if h.page_size.is_empty() {
            return Err(bad(format!("{at}.hugepage_limits[{i}].page_size"), "empty"));
        }
    }
    for key in r.unified.keys() {
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            return Err(bad(
                format!("{at}.unified[{key:?}]"),
                "not the name of a cgroup file",
            ));
        }
    }
    Ok(())
}

/// A cpuset list: `0-3,8,10-11`.
fn cpu_list(field: &str, list: &str) -> Checked {
    if list.is_empty() {
        return Ok(());
    }
    let number = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    for part in list.trim().split(',') {
        let ok = match part.split_once('-') {
            Some((a, b)) => {
                number(a) && number(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok()
            }
            None => number(part),
        };
        if !ok {
            return Err(bad(
                field,
                format!("{list:?} is not a list of numbers and ranges (0-3,8)"),
            ));
        }
    }
    Ok(())
}

/// A timeout in seconds: 0 or more.
fn seconds(field: &str, value: i64) -> Checked {
    if value < 0 {
        return Err(bad(field, format!("{value} s is negative")));
    }
    Ok(())
}

fn pod_id(id: &str) -> Checked {
    required("pod_sandbox_id", id)
}

fn container_id(id: &str) -> Checked {
    required("container_id", id)
}

fn image_spec(field: &str, image: Option<&ImageSpec>) -> Checked {
    let image = image.ok_or_else(|| bad(field, "missing"))?;
    required(&format!("{field}.image"), &image.image)
}

/// The streams of an Exec or Attach.
fn streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Checked {
    if !(stdin || stdout || stderr) {
        return Err(bad(
            "stdin/stdout/stderr",
            "none asked for; at least one must be",
        ));
    }
    if tty && stderr {
        return Err(bad(
            "stderr",
            "asked for with tty; a terminal has no stderr of its own",
        ));
    }
    Ok(())
}

/// A pod's configuration, as RunPodSandbox takes it.
pub fn pod_sandbox_config(at: &str, config: &PodSandboxConfig) -> Checked {
    let md = present(&format!("{at}.metadata"), &config.metadata)?;
    for (name, value) in [
        ("name", &md.name),
        ("uid", &md.uid),
        ("namespace", &md.namespace),
    ] {
        required(&format!("{at}.metadata.{name}"), value)?;
    }
    if md.attempt > i32::MAX as u32 {
        return Err(bad(format!("{at}.metadata.attempt"), "out of range"));
    }
    for (i, p) in config.port_mappings.iter().enumerate() {
        let field = |name: &str| format!("{at}.port_mappings[{i}].{name}");
        known::<Protocol>(&field("protocol"), p.protocol)?;
        if !(1..=65535).contains(&p.container_port) {
            return Err(bad(
                field("container_port"),
                format!("{} is not a port", p.container_port),
            ));
        }
        if !(0..=65535).contains(&p.host_port) {
            return Err(bad(
                field("host_port"),
                format!("{} is not a port", p.host_port),
            ));
        }
        if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(bad(
                field("host_ip"),
                format!("{:?} is not an IP address", p.host_ip),
            ));
        }
    }
    if let Some(dns) = &config.dns_config {
        for (i, s) in dns.servers.iter().enumerate() {
            if s.parse::<std::net::IpAddr>().is_err() {
                return Err(bad(
                    format!("{at}.dns_config.servers[{i}]"),
                    format!("{s:?} is not an IP address"),
                ));
            }
        }
    }
    if let Some(linux) = &config.linux {
        let at = format!("{at}.linux");
        for key in linux.sysctls.keys() {
            if key.is_empty() || key.starts_with(['.', '/']) || key.contains("..") {
                return Err(bad(format!("{at}.sysctls[{key:?}]"), "not a sysctl name"));
            }
        }
        resources(&format!("{at}.overhead"), linux.overhead.as_ref())?;
        resources(&format!("{at}.resources"), linux.resources.as_ref())?;
        if let Some(sc) = &linux.security_context {
            let at = format!("{at}.security_context");
            namespaces(&at, sc.namespace_options.as_ref(), true)?;
            user_ids(&at, sc.run_as_user.as_ref(), "", sc.run_as_group.as_ref())?;
            group_ids(
                &format!("{at}.supplemental_groups"),
                &sc.supplemental_groups,
            )?;
            known::<SupplementalGroupsPolicy>(
                &format!("{at}.supplemental_groups_policy"),
                sc.supplemental_groups_policy,
            )?;
            profile(&format!("{at}.seccomp"), sc.seccomp.as_ref())?;
            profile(&format!("{at}.apparmor"), sc.apparmor.as_ref())?;
            #[allow(deprecated)]
            profile_path(
                &format!("{at}.seccomp_profile_path"),
                &sc.seccomp_profile_path,
                &["runtime/default", "docker/default"],
            )?;
        }
    }
    Ok(())
}

/// A container's configuration, as CreateContainer takes it.
pub fn container_config(at: &str, config: &ContainerConfig) -> Checked {
    let md = present(&format!("{at}.metadata"), &config.metadata)?;
    required(&format!("{at}.metadata.name"), &md.name)?;
    if md.attempt > i32::MAX as u32 {
        return Err(bad(format!("{at}.metadata.attempt"), "out of range"));
    }
    image_spec(&format!("{at}.image"), config.image.as_ref())?;
    if std::path::Path::new(&config.log_path)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad(
            format!("{at}.log_path"),
            format!("{:?} leads out of the pod's log directory", config.log_path),
        ));
    }
    for (i, kv) in config.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains(['=', '\0']) {
            return Err(bad(
                format!("{at}.envs[{i}].key"),
                format!("{:?} is empty or holds '=' or NUL", kv.key),
            ));
        }
        match std::str::from_utf8(&kv.value) {
            Ok(v) if v.contains('\0') => {
                return Err(bad(
                    format!("{at}.envs[{i}].value"),
                    format!("the value of {:?} holds NUL", kv.key),
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(bad(
                    format!("{at}.envs[{i}].value"),
                    format!("the value of {:?} is not UTF-8", kv.key),
                ));
            }
        }
    }
    for (name, list) in [("command", &config.command), ("args", &config.args)] {
        if let Some(i) = list.iter().position(|a| a.contains('\0')) {
            return Err(bad(format!("{at}.{name}[{i}]"), "holds NUL"));
        }
    }
    if config.working_dir.contains('\0') {
        return Err(bad(format!("{at}.working_dir"), "holds NUL"));
    }
    for (i, m) in config.mounts.iter().enumerate() {
        let field = |name: &str| format!("{at}.mounts[{i}].{name}");
        absolute(&field("container_path"), &m.container_path)?;
        let from_image = m.image.as_ref().is_some_and(|s| !s.image.is_empty());
        if !from_image {
            absolute(&field("host_path"), &m.host_path)?;
        }
        known::<MountPropagation>(&field("propagation"), m.propagation)?;
        id_mappings(&field("uid_mappings"), &m.uid_mappings)?;
        id_mappings(&field("gid_mappings"), &m.gid_mappings)?;
        if m.recursive_read_only && !m.readonly {
            return Err(bad(
                field("recursive_read_only"),
                "set, and the mount is not read-only",
            ));
        }
    }
    for (i, d) in config.devices.iter().enumerate() {
        let field = |name: &str| format!("{at}.devices[{i}].{name}");
        absolute(&field("container_path"), &d.container_path)?;
        absolute(&field("host_path"), &d.host_path)?;
        if !d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(bad(
                field("permissions"),
                format!("{:?}: only r, w and m", d.permissions),
            ));
        }
    }
    for (i, d) in config.cdi_devices.iter().enumerate() {
        required(&format!("{at}.CDI_devices[{i}].name"), &d.name)?;
    }
    known::<Signal>(&format!("{at}.stop_signal"), config.stop_signal)?;
    if let Some(linux) = &config.linux {
        let at = format!("{at}.linux");
        resources(&format!("{at}.resources"), linux.resources.as_ref())?;
        if let Some(sc) = &linux.security_context {
            let at = format!("{at}.security_context");
            namespaces(&at, sc.namespace_options.as_ref(), false)?;
            user_ids(
                &at,
                sc.run_as_user.as_ref(),
                &sc.run_as_username,
                sc.run_as_group.as_ref(),
            )?;
            group_ids(
                &format!("{at}.supplemental_groups"),
                &sc.supplemental_groups,
            )?;
            known::<SupplementalGroupsPolicy>(
                &format!("{at}.supplemental_groups_policy"),
                sc.supplemental_groups_policy,
            )?;
            if let Some(c) = &sc.capabilities {
                for (name, list) in [
                    ("add_capabilities", &c.add_capabilities),
                    ("drop_capabilities", &c.drop_capabilities),
                    ("add_ambient_capabilities", &c.add_ambient_capabilities),
                ] {
                    for (i, cap) in list.iter().enumerate() {
                        let name_like = !cap.is_empty()
                            && cap.len() <= 64
                            && cap.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                        if !name_like {
                            return Err(bad(
                                format!("{at}.capabilities.{name}[{i}]"),
                                format!("{cap:?} is not a capability name"),
                            ));
                        }
                    }
                }
            }
            for (name, list) in [
                ("masked_paths", &sc.masked_paths),
                ("readonly_paths", &sc.readonly_paths),
            ] {
                for (i, p) in list.iter().enumerate() {
                    absolute(&format!("{at}.{name}[{i}]"), p)?;
                }
            }
            profile(&format!("{at}.seccomp"), sc.seccomp.as_ref())?;
            profile(&format!("{at}.apparmor"), sc.apparmor.as_ref())?;
            #[allow(deprecated)]
            {
                profile_path(
                    &format!("{at}.seccomp_profile_path"),
                    &sc.seccomp_profile_path,
                    &["runtime/default", "docker/default"],
                )?;
                profile_path(
                    &format!("{at}.apparmor_profile"),
                    &sc.apparmor_profile,
                    &["runtime/default"],
                )?;
            }
        }
    }
    Ok(())
}

impl Validate for RunPodSandboxRequest {
    fn validate(&self) -> Checked {
        pod_sandbox_config("config", present("config", &self.config)?)
    }
}

impl Validate for CreateContainerRequest {
    fn validate(&self) -> Checked {
        pod_id(&self.pod_sandbox_id)?;
        container_config("config", present("config", &self.config)?)
    }
}

macro_rules! by_pod_id {
    ($($t:ty),*) => {$(
        impl Validate for $t {
            fn validate(&self) -> Checked {
                pod_id(&self.pod_sandbox_id)
            }
        }
    )*};
}
by_pod_id!(
    StopPodSandboxRequest,
    RemovePodSandboxRequest,
    PodSandboxStatusRequest,
    PodSandboxStatsRequest
);

macro_rules! by_container_id {
    ($($t:ty),*) => {$(
        impl Validate for $t {
            fn validate(&self) -> Checked {
                container_id(&self.container_id)
            }
        }
    )*};
}
by_container_id!(
    StartContainerRequest,
    RemoveContainerRequest,
    ContainerStatusRequest,
    ReopenContainerLogRequest,
    ContainerStatsRequest
);

macro_rules! nothing_required {
    ($($t:ty),*) => {$(
        impl Validate for $t {
            fn validate(&self) -> Checked {
                Ok(())
            }
        }
    )*};
}
nothing_required!(
    VersionRequest,
    ListPodSandboxRequest,
    StreamPodSandboxesRequest,
    ListContainersRequest,
    StreamContainersRequest,
    ListContainerStatsRequest,
    StreamContainerStatsRequest,
    ListPodSandboxStatsRequest,
    StreamPodSandboxStatsRequest,
    StatusRequest,
    GetEventsRequest,
    ListMetricDescriptorsRequest,
    ListPodSandboxMetricsRequest,
    StreamPodSandboxMetricsRequest,
    RuntimeConfigRequest,
    ListImagesRequest,
    StreamImagesRequest,
    ImageFsInfoRequest
);

impl Validate for StopContainerRequest {
    fn validate(&self) -> Checked {
        container_id(&self.container_id)?;
        seconds("timeout", self.timeout)
    }
}

impl Validate for UpdateContainerResourcesRequest {
    fn validate(&self) -> Checked {
        container_id(&self.container_id)?;
        resources("linux", self.linux.as_ref())
    }
}

impl Validate for UpdatePodSandboxResourcesRequest {
    fn validate(&self) -> Checked {
        pod_id(&self.pod_sandbox_id)?;
        resources("overhead", self.overhead.as_ref())?;
        resources("resources", self.resources.as_ref())
    }
}

fn command(cmd: &[String]) -> Checked {
    if cmd.is_empty() || cmd[0].is_empty() {
        return Err(bad("cmd", "empty"));
    }
    if let Some(i) = cmd.iter().position(|a| a.contains('\0')) {
        return Err(bad(format!("cmd[{i}]"), "holds NUL"));
    }
    Ok(())
}

impl Validate for ExecSyncRequest {
    fn validate(&self) -> Checked {
        container_id(&self.container_id)?;
        command(&self.cmd)?;
        seconds("timeout", self.timeout)
    }
}

impl Validate for ExecRequest {
    fn validate(&self) -> Checked {
        container_id(&self.container_id)?;
        command(&self.cmd)?;
        streams(self.tty, self.stdin, self.stdout, self.stderr)
    }
}

impl Validate for AttachRequest {
    fn validate(&self) -> Checked {
        container_id(&self.container_id)?;
        streams(self.tty, self.stdin, self.stdout, self.stderr)
    }
}

impl Validate for PortForwardRequest {
    fn validate(&self) -> Checked {
        pod_id(&self.pod_sandbox_id)?;
        for (i, p) in self.port.iter().enumerate() {
            if !(1..=65535).contains(p) {
                return Err(bad(format!("port[{i}]"), format!("{p} is not a TCP port")));
            }
        }
        Ok(())
    }
}

impl Validate for UpdateRuntimeConfigRequest {
    fn validate(&self) -> Checked {
        let Some(net) = self
            .runtime_config
            .as_ref()
            .and_then(|c| c.network_config.as_ref())
        else {
            return Ok(());
        };
        if net.pod_cidr.is_empty() {
            return Ok(());
        }
        for (i, cidr) in net.pod_cidr.split(',').enumerate() {
            let ok = cidr.split_once('/').is_some_and(|(ip, len)| {
                let max = match ip.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(_)) => 32,
                    Ok(std::net::IpAddr::V6(_)) => 128,
                    Err(_) => return false,
                };
                len.parse::<u8>().is_ok_and(|l| l <= max)
            });
            if !ok {
                return Err(bad(
                    format!("runtime_config.network_config.pod_cidr[{i}]"),
                    format!("{cidr:?} is not a CIDR"),
                ));
            }
        }
        Ok(())
    }
}

impl Validate for CheckpointContainerRequest {
    fn validate(&self) -> Checked {
        container_id(&self.container_id)?;
        seconds("timeout", self.timeout)
    }
}

impl Validate for PullImageRequest {
    fn validate(&self) -> Checked {
        image_spec("image", self.image.as_ref())?;
        if let Some(config) = &self.sandbox_config {
            pod_sandbox_config("sandbox_config", config)?;
        }
        Ok(())
    }
}

impl Validate for ImageStatusRequest {
    fn validate(&self) -> Checked {
        image_spec("image", self.image.as_ref())
    }
}

impl Validate for RemoveImageRequest {
    fn validate(&self) -> Checked {
        image_spec("image", self.image.as_ref())
    }
}

/// A CRI service that answers `INVALID_ARGUMENT` to every request the
/// CRI's rules refuse, and hands the rest to the service it wraps: what a
/// runtime implements behind it sees only requests that passed
/// [`Validate`], so nothing is made for a malformed one.
///
/// ```
/// # #[cfg(feature = "server")] {
/// use cri_api::v1::{ImageService, ImageServiceServer, RuntimeService, RuntimeServiceServer};
/// use cri_api::validate::Validated;
///
/// struct MyRuntime;
/// impl RuntimeService for MyRuntime {}
/// struct MyImages;
/// impl ImageService for MyImages {}
///
/// let runtime = RuntimeServiceServer::new(Validated(MyRuntime));
/// let images = ImageServiceServer::new(Validated(MyImages));
/// # let _ = (runtime, images);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Validated<S>(pub S);

#[cfg(feature = "server")]
macro_rules! validated {
    ($service:ident { $($name:ident($req:ty) -> $resp:ty;)* }) => {
        #[tonic::async_trait]
        impl<S: $service> $service for Validated<S> {
            $(
                async fn $name(
                    &self,
                    req: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, tonic::Status> {
                    req.get_ref().validate()?;
                    self.0.$name(req).await
                }
            )*
        }
    };
}

#[cfg(feature = "server")]
type Stream<T> = tonic::codegen::BoxStream<T>;

#[cfg(feature = "server")]
validated!(RuntimeService {
    version(VersionRequest) -> VersionResponse;
    run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
    stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
    pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    stream_pod_sandboxes(StreamPodSandboxesRequest) -> Stream<StreamPodSandboxesResponse>;
    create_container(CreateContainerRequest) -> CreateContainerResponse;
    start_container(StartContainerRequest) -> StartContainerResponse;
    stop_container(StopContainerRequest) -> StopContainerResponse;
    remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
    list_containers(ListContainersRequest) -> ListContainersResponse;
    stream_containers(StreamContainersRequest) -> Stream<StreamContainersResponse>;
    container_status(ContainerStatusRequest) -> ContainerStatusResponse;
    update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
    reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
    exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    exec(ExecRequest) -> ExecResponse;
    attach(AttachRequest) -> AttachResponse;
    port_forward(PortForwardRequest) -> PortForwardResponse;
    container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
    list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
    stream_container_stats(StreamContainerStatsRequest) -> Stream<StreamContainerStatsResponse>;
    pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
    list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
    stream_pod_sandbox_stats(StreamPodSandboxStatsRequest) -> Stream<StreamPodSandboxStatsResponse>;
    update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
    status(StatusRequest) -> StatusResponse;
    checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
    get_container_events(GetEventsRequest) -> Stream<ContainerEventResponse>;
    list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
    list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
    stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest) -> Stream<StreamPodSandboxMetricsResponse>;
    runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
    update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse;
});

#[cfg(feature = "server")]
validated!(ImageService {
    list_images(ListImagesRequest) -> ListImagesResponse;
    stream_images(StreamImagesRequest) -> Stream<StreamImagesResponse>;
    image_status(ImageStatusRequest) -> ImageStatusResponse;
    pull_image(PullImageRequest) -> PullImageResponse;
    remove_image(RemoveImageRequest) -> RemoveImageResponse;
    image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
});

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "p".into(),
                uid: "u".into(),
                namespace: "n".into(),
                attempt: 0,
            }),
            ..Default::default()
        }
    }

    fn ctr() -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn create(cfg: ContainerConfig) -> Result<(), Invalid> {
        CreateContainerRequest {
            pod_sandbox_id: "p1".into(),
            config: Some(cfg),
            sandbox_config: None,
        }
        .validate()
    }

    fn field_of(r: Result<(), Invalid>) -> String {
        r.expect_err("refused").field
    }

    #[test]
    fn well_formed_requests_pass() {
        RunPodSandboxRequest {
            config: Some(pod()),
            runtime_handler: String::new(),
        }
        .validate()
        .unwrap();
        create(ctr()).unwrap();
    }

    #[test]
    fn pods_need_their_metadata() {
        let mut p = pod();
        p.metadata.as_mut().unwrap().uid.clear();
        let r = RunPodSandboxRequest {
            config: Some(p),
            runtime_handler: String::new(),
        };
        assert_eq!(field_of(r.validate()), "config.metadata.uid");
        let r = RunPodSandboxRequest {
            config: Some(PodSandboxConfig::default()),
            runtime_handler: String::new(),
        };
        assert_eq!(
            r.validate().unwrap_err().to_string(),
            "config.metadata: missing"
        );
    }

    #[test]
    fn ports_and_enums_are_in_range() {
        let mut p = pod();
        p.port_mappings.push(PortMapping {
            protocol: 7,
            container_port: 80,
            host_port: 0,
            host_ip: String::new(),
        });
        let e = pod_sandbox_config("config", &p).unwrap_err();
        assert_eq!(e.field, "config.port_mappings[0].protocol");
        assert_eq!(e.reason, "unknown value 7");
        p.port_mappings[0].protocol = 0;
        p.port_mappings[0].container_port = 70000;
        assert_eq!(
            field_of(pod_sandbox_config("config", &p)),
            "config.port_mappings[0].container_port"
        );
    }

    #[test]
    fn run_as_group_needs_a_user() {
        let mut c = ctr();
        c.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_group: Some(Int64Value { value: 5 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            field_of(create(c.clone())),
            "config.linux.security_context.run_as_group"
        );
        let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sc.run_as_username = "nobody".into();
        create(c.clone()).unwrap();
        let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sc.run_as_user = Some(Int64Value { value: -3 });
        assert_eq!(
            field_of(create(c)),
            "config.linux.security_context.run_as_user"
        );
    }

    #[test]
    fn target_pid_mode_names_a_container_and_belongs_to_containers() {
        let mut c = ctr();
        c.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Target as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            field_of(create(c.clone())),
            "config.linux.security_context.namespace_options.target_id"
        );
        let mut p = pod();
        p.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Target as i32,
                    target_id: "x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            field_of(pod_sandbox_config("config", &p)),
            "config.linux.security_context.namespace_options.pid"
        );
    }

    #[test]
    fn mounts_devices_and_envs_are_checked_by_index() {
        let mut c = ctr();
        c.mounts.push(Mount {
            container_path: "/data".into(),
            host_path: "relative".into(),
            ..Default::default()
        });
        assert_eq!(field_of(create(c.clone())), "config.mounts[0].host_path");
        c.mounts[0].host_path = "/srv".into();
        c.mounts[0].propagation = 9;
        assert_eq!(field_of(create(c.clone())), "config.mounts[0].propagation");
        c.mounts.clear();
        c.devices.push(Device {
            container_path: "/dev/x".into(),
            host_path: "/dev/null".into(),
            permissions: "rwx".into(),
        });
        assert_eq!(field_of(create(c.clone())), "config.devices[0].permissions");
        c.devices.clear();
        c.envs.push(KeyValue {
            key: "A=B".into(),
            value: b"v".to_vec(),
        });
        assert_eq!(field_of(create(c.clone())), "config.envs[0].key");
        c.envs[0] = KeyValue {
            key: "A".into(),
            value: vec![0xff],
        };
        let e = create(c).unwrap_err();
        assert_eq!(e.field, "config.envs[0].value");
        assert!(e.reason.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn resources_take_what_cgroups_take() {
        let res = |r: LinuxContainerResources| {
            UpdateContainerResourcesRequest {
                container_id: "c".into(),
                linux: Some(r),
                ..Default::default()
            }
            .validate()
        };
        let ok = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpuset_cpus: "0-1,3".into(),
            oom_score_adj: -999,
            ..Default::default()
        };
        res(ok.clone()).unwrap();
        for (r, field) in [
            (
                LinuxContainerResources {
                    cpu_quota: 5,
                    ..ok.clone()
                },
                "linux.cpu_quota",
            ),
            (
                LinuxContainerResources {
                    oom_score_adj: 1001,
                    ..ok.clone()
                },
                "linux.oom_score_adj",
            ),
            (
                LinuxContainerResources {
                    cpuset_cpus: "3-1".into(),
                    ..ok.clone()
                },
                "linux.cpuset_cpus",
            ),
            (
                LinuxContainerResources {
                    unified: [("../x".to_string(), "1".to_string())].into(),
                    ..ok.clone()
                },
                "linux.unified[\"../x\"]",
            ),
        ] {
            assert_eq!(field_of(res(r)), field);
        }
    }

    #[test]
    fn streams_and_commands() {
        let exec = ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: true,
        };
        assert_eq!(field_of(exec.validate()), "stderr");
        let attach = AttachRequest {
            container_id: "c".into(),
            ..Default::default()
        };
        assert_eq!(field_of(attach.validate()), "stdin/stdout/stderr");
        let sync = ExecSyncRequest {
            container_id: "c".into(),
            cmd: vec![],
            timeout: 0,
        };
        assert_eq!(field_of(sync.validate()), "cmd");
        let pf = PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80, 0],
        };
        assert_eq!(field_of(pf.validate()), "port[1]");
    }

    #[test]
    fn quoted_input_is_escaped() {
        let mut c = ctr();
        c.mounts.push(Mount {
            container_path: "rel\u{1b}[31m\n".into(),
            host_path: "/h".into(),
            ..Default::default()
        });
        let msg = create(c).unwrap_err().to_string();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.contains("\\u{1b}"), "{msg}");
    }

    #[cfg(feature = "server")]
    #[test]
    fn validated_hands_on_only_what_passes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        #[derive(Default)]
        struct Counting(AtomicUsize);
        #[tonic::async_trait]
        impl RuntimeService for Counting {
            async fn create_container(
                &self,
                _req: tonic::Request<CreateContainerRequest>,
            ) -> Result<tonic::Response<CreateContainerResponse>, tonic::Status> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(tonic::Response::new(CreateContainerResponse {
                    container_id: "made".into(),
                }))
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let svc = Validated(Counting::default());
        let call = |req: CreateContainerRequest| {
            rt.block_on(svc.create_container(tonic::Request::new(req)))
        };
        let e = call(CreateContainerRequest::default()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "pod_sandbox_id: empty");
        assert_eq!(svc.0.0.load(Ordering::SeqCst), 0);
        let ok = call(CreateContainerRequest {
            pod_sandbox_id: "p".into(),
            config: Some(ctr()),
            sandbox_config: None,
        })
        .unwrap();
        assert_eq!(ok.get_ref().container_id, "made");
        assert_eq!(svc.0.0.load(Ordering::SeqCst), 1);
        // What the wrapped service does not implement stays UNIMPLEMENTED.
        let e = rt
            .block_on(
                svc.checkpoint_container(tonic::Request::new(CheckpointContainerRequest {
                    container_id: "c".into(),
                    ..Default::default()
                })),
            )
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
    }
}
