//! Pod sandboxes: a pause process (this binary's `pod-infra`) per pod, holding
//! the pod's namespaces, created through oci-runtime under a monitor of its
//! own so that it outlives `serve`. What the kubelet gave (metadata, labels,
//! annotations, namespace options) is kept in the persistent state dir; a
//! restarted `serve` reads it back and asks oci-runtime whether the pause
//! process still runs.
//!
//! Pods share the host's network namespace only (`hostNetwork`) until CNI
//! lands; any other pod is refused, saying so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cri_api::v1::{
    LinuxPodSandboxStatus, ListPodSandboxRequest, ListPodSandboxResponse, Namespace, NamespaceMode,
    NamespaceOption, PodSandbox, PodSandboxConfig, PodSandboxMetadata, PodSandboxNetworkStatus,
    PodSandboxState, PodSandboxStatus, PodSandboxStatusRequest, PodSandboxStatusResponse,
    RemovePodSandboxRequest, RemovePodSandboxResponse, RunPodSandboxRequest, RunPodSandboxResponse,
    StopPodSandboxRequest, StopPodSandboxResponse,
};
use cri_api::{Request, Response, Status};
use oci_runtime::monitor::MonitorOptions;
use serde::{Deserialize, Serialize};

use super::Logger;
use super::spec::Sandbox;
use super::status::{chain, internal, invalid};

/// One pod as the server remembers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pod {
    id: String,
    name: String,
    uid: String,
    namespace: String,
    attempt: u32,
    created_at: i64,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    runtime_handler: String,
    /// NamespaceMode values of network, pid and ipc.
    modes: (i32, i32, i32),
    /// Set once StopPodSandbox ran: the pod stays NOTREADY.
    stopped: bool,
    /// The cgroup the pod's containers go under ("": the default).
    #[serde(default)]
    cgroup_parent: String,
    /// Where the kubelet wants the containers' logs.
    #[serde(default)]
    log_directory: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    privileged: bool,
    /// The pinned network namespace ("" on the host's network).
    #[serde(default)]
    netns: String,
    /// The CNI network it is attached to, and the IPs it got.
    #[serde(default)]
    network: String,
    #[serde(default)]
    ips: Vec<String>,
    /// Set once the network was torn down (CNI DEL done, netns unpinned).
    #[serde(default)]
    net_down: bool,
    /// Sysctls the pause process set.
    #[serde(default)]
    sysctls: HashMap<String, String>,
    /// The pod's overhead and resources as UpdatePodSandboxResources last
    /// gave them (the pod cgroup itself is the kubelet's).
    #[serde(default)]
    resources: Option<serde_json::Value>,
    /// The pod's user namespace mappings (container id, host id, length);
    /// empty: the host's user namespace.
    #[serde(default)]
    uid_map: Vec<(u32, u32, u32)>,
    #[serde(default)]
    gid_map: Vec<(u32, u32, u32)>,
}

/// What the stats RPCs need of a pod.
#[derive(Debug)]
pub(crate) struct PodStatsInfo {
    pub id: String,
    pub metadata: PodSandboxMetadata,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    /// The pause process, while it runs.
    pub pid: Option<i32>,
    pub own_netns: bool,
    /// The pause container's cgroup stats.
    pub pause: Option<oci_runtime::cgroups::stats::Stats>,
}

/// Where pods get their networks: CNI config lists and plugins.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub conf_dir: PathBuf,
    pub cni: cni::Cni,
}

impl Network {
    /// The network pods are attached to: the first usable config list.
    pub(crate) fn default_list(&self) -> Result<cni::NetworkConfigList, String> {
        let (lists, skipped) = cni::load_dir(&self.conf_dir).map_err(|e| e.to_string())?;
        match lists.into_iter().next() {
            Some(l) => Ok(l),
            None => {
                let why: Vec<String> = skipped.iter().map(ToString::to_string).collect();
                Err(format!(
                    "no CNI network config in {}{}",
                    self.conf_dir.display(),
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" (unusable: {})", why.join("; "))
                    }
                ))
            }
        }
    }
}

/// Sysctls that act on a namespace the pod may share with the host.
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    if name.starts_with("net.") {
        Some("network")
    } else if name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name == "kernel.sem"
        || name.starts_with("fs.mqueue.")
    {
        Some("ipc")
    } else if name == "kernel.hostname" || name == "kernel.domainname" {
        Some("uts")
    } else {
        None
    }
}

/// The pod side of the server.
#[derive(Debug, Clone)]
pub(crate) struct Pods {
    meta: PathBuf,
    root: PathBuf,
    rt: Arc<oci_runtime::Runtime>,
    exe: PathBuf,
    log: Logger,
    pods: Arc<Mutex<HashMap<String, Pod>>>,
    network: Network,
}

impl Pods {
    /// Loads what `meta` (the persistent state dir) remembers.
    pub(crate) fn open(
        meta: &Path,
        root: &Path,
        network: Network,
        log: Logger,
    ) -> Result<Self, String> {
        let dir = meta.join("pods");
        let pods = super::records::load::<Pod>(&dir, "pod", |p| p.id.clone(), &log)?;
        let exe = super::exe_path()?;
        let this = Self {
            meta: dir,
            root: root.to_path_buf(),
            rt: Arc::new(oci_runtime::Runtime::new(root)),
            exe,
            log,
            pods: Arc::new(Mutex::new(pods)),
            network,
        };
        this.sweep_half_made();
        Ok(this)
    }

    /// What a RunPodSandbox cut off (a kill of the server) left for a pod
    /// with no record: a CNI attachment (whose addresses the plugins may
    /// have allocated), a pinned netns, a pause container, its dir (a record
    /// half-written went as the records were read). All of it goes.
    fn sweep_half_made(&self) {
        let known: std::collections::HashSet<String> = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut orphans = std::collections::BTreeSet::new();
        for (network, mut att) in self.network.cni.pending() {
            if known.contains(&att.container_id) {
                continue;
            }
            if !cni::netns::is_pinned(&att.netns) {
                att.netns = PathBuf::new();
            }
            if let Err(e) = self.network.cni.del(None, &network, &att) {
                self.log.log(
                    "warn",
                    &format!(
                        "releasing network {network} of pod {}, left half-made: {e}",
                        att.container_id
                    ),
                );
            }
            if !att.netns.as_os_str().is_empty() {
                let _ = cni::netns::remove(&att.netns);
            }
            orphans.insert(att.container_id);
        }
        for sub in ["pods", "netns"] {
            if let Ok(entries) = std::fs::read_dir(self.root.join(sub)) {
                for e in entries.flatten() {
                    let id = e.file_name().to_string_lossy().into_owned();
                    if !known.contains(&id) {
                        orphans.insert(id);
                    }
                }
            }
        }
        for id in orphans {
            self.log.log(
                "warn",
                &format!("removing pod {id}, left half-made by an earlier run"),
            );
            let _ = self.rt.kill(&id, libc::SIGKILL, true);
            let _ = self
                .rt
                .wait_exit(&id, Some(std::time::Duration::from_secs(10)));
            let _ = self.rt.delete(&id, true);
            let _ = std::fs::remove_dir_all(self.root.join("pods").join(&id));
            let pin = self.root.join("netns").join(&id);
            if cni::netns::is_pinned(&pin) {
                let _ = cni::netns::remove(&pin);
            } else {
                let _ = std::fs::remove_file(&pin);
            }
        }
    }

    fn save(&self, pod: &Pod) -> Result<(), Status> {
        super::records::save(&self.meta, &pod.id, "pod", pod)
    }

    fn state_of(&self, pod: &Pod) -> PodSandboxState {
        let running = !pod.stopped
            && self
                .rt
                .state(&pod.id)
                .is_ok_and(|s| *s.state.status() == oci_spec::runtime::ContainerState::Running);
        if running {
            PodSandboxState::SandboxReady
        } else {
            PodSandboxState::SandboxNotready
        }
    }

    fn get(&self, id: &str) -> Result<Pod, Status> {
        if id.is_empty() {
            return Err(invalid("pod_sandbox_id", "empty"));
        }
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id} not found")))
    }

    /// The pause process's spec: its own mount, ipc and pid namespaces (as
    /// the pod asks), the host's network; a read-only rootfs holding only
    /// this binary (bound at `/pause`) and the host's `/usr` for its
    /// libraries.
    fn pause_spec(
        &self,
        pod: &Pod,
        cgroup_parent: &str,
    ) -> Result<oci_spec::runtime::Spec, Status> {
        let mut namespaces = vec![serde_json::json!({"type": "mount"})];
        if !pod.uid_map.is_empty() {
            namespaces.push(serde_json::json!({"type": "user"}));
        }
        if !pod.netns.is_empty() && !pod.uid_map.is_empty() {
            // The pause process makes it, in (and owned by) the pod's user
            // namespace, so that containers which join that one first may
            // join it too; it is pinned and attached before the pause starts.
            namespaces.push(serde_json::json!({"type": "network"}));
            namespaces.push(serde_json::json!({"type": "uts"}));
        } else if !pod.netns.is_empty() {
            namespaces.push(serde_json::json!({"type": "network", "path": pod.netns}));
            namespaces.push(serde_json::json!({"type": "uts"}));
        }
        if pod.modes.2 != NamespaceMode::Node as i32 {
            namespaces.push(serde_json::json!({"type": "ipc"}));
        }
        if pod.modes.1 != NamespaceMode::Node as i32 {
            namespaces.push(serde_json::json!({"type": "pid"}));
        }
        let parent = if cgroup_parent.is_empty() {
            "/mini-runtime"
        } else {
            cgroup_parent.trim_end_matches('/')
        };
        let mut spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "args": ["/pause", "pod-infra"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "env": [], "noNewPrivileges": true, "capabilities": {}
            },
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/usr", "type": "bind", "source": "/usr",
                 "options": ["rbind", "ro", "nosuid", "nodev"]},
                {"destination": "/pause", "type": "bind", "source": self.exe,
                 "options": ["bind", "ro", "nosuid", "nodev"]}
            ],
            "linux": {
                "namespaces": namespaces,
                "cgroupsPath": format!("{parent}/pod-{}", pod.id),
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"],
                "sysctl": pod.sysctls,
            }
        });
        if !pod.netns.is_empty() {
            spec["hostname"] = serde_json::json!(pod.hostname);
        }
        if !pod.uid_map.is_empty() {
            let maps = |m: &[(u32, u32, u32)]| {
                m.iter()
                    .map(|(c, h, n)| serde_json::json!({"containerID": c, "hostID": h, "size": n}))
                    .collect::<Vec<_>>()
            };
            spec["linux"]["uidMappings"] = serde_json::json!(maps(&pod.uid_map));
            spec["linux"]["gidMappings"] = serde_json::json!(maps(&pod.gid_map));
        }
        serde_json::from_value(spec).map_err(|e| internal("building the pause spec", e))
    }

    /// The pause rootfs: mount points, and the host's merged-/usr links.
    fn pause_rootfs(&self, id: &str) -> std::io::Result<PathBuf> {
        let dir = self.root.join("pods").join(id).join("rootfs");
        for d in ["proc", "dev", "usr"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        std::fs::write(dir.join("pause"), b"")?;
        for link in ["lib", "lib64", "bin", "sbin"] {
            if let Ok(target) = std::fs::read_link(Path::new("/").join(link)) {
                let at = dir.join(link);
                if std::fs::symlink_metadata(&at).is_err() {
                    std::os::unix::fs::symlink(target, at)?;
                }
            }
        }
        Ok(dir)
    }

    /// The files the pod's containers get at `/etc/hostname`,
    /// `/etc/resolv.conf` (the request's DNS config, else the host's) and
    /// `/etc/hosts` (the host's).
    fn pod_files(&self, pod: &Pod, dns: Option<&cri_api::v1::DnsConfig>) -> std::io::Result<()> {
        let dir = self.root.join("pods").join(&pod.id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("hostname"), format!("{}\n", pod.hostname))?;
        let resolv = match dns {
            Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
                let mut s = String::new();
                if !d.searches.is_empty() {
                    s.push_str(&format!("search {}\n", d.searches.join(" ")));
                }
                for server in &d.servers {
                    s.push_str(&format!("nameserver {server}\n"));
                }
                if !d.options.is_empty() {
                    s.push_str(&format!("options {}\n", d.options.join(" ")));
                }
                s
            }
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        std::fs::write(dir.join("resolv.conf"), resolv)?;
        let local = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
        // The host's for pods on its network; the kubelet mounts its own
        // over it for the others.
        let hosts = if pod.netns.is_empty() {
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| local.into())
        } else {
            local.to_string()
        };
        std::fs::write(dir.join("hosts"), hosts)
    }

    fn attachment(pod: &Pod) -> cni::Attachment {
        cni::Attachment {
            container_id: pod.id.clone(),
            netns: PathBuf::from(&pod.netns),
            ifname: "eth0".into(),
            args: vec![
                ("K8S_POD_NAMESPACE".into(), pod.namespace.clone()),
                ("K8S_POD_NAME".into(), pod.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), pod.id.clone()),
                ("K8S_POD_UID".into(), pod.uid.clone()),
            ],
            capability_args: Default::default(),
        }
    }

    /// Pins the pod's network namespace and attaches it to `list`; the IPs.
    /// Pins the pod's network namespace: a new one, or with `made` the one
    /// there (the pause process's own).
    fn pin_netns(&self, pod: &Pod, made: Option<&Path>) -> Result<(), String> {
        let path = PathBuf::from(&pod.netns);
        let (dir, name) = (path.parent().unwrap_or(Path::new("/")), pod.id.as_str());
        match made {
            Some(src) => cni::netns::pin(src, dir, name).and_then(|p| cni::netns::loopback_up(&p)),
            None => cni::netns::create(dir, name).map(drop),
        }
        .map_err(|e| e.to_string())
    }

    /// Attaches the pod's pinned namespace to `list`; the IPs.
    fn attach(
        &self,
        pod: &Pod,
        list: &cni::NetworkConfigList,
        ports: &[cri_api::v1::PortMapping],
    ) -> Result<Vec<String>, String> {
        let mut att = Self::attachment(pod);
        let maps: Vec<serde_json::Value> = ports
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| {
                let proto = match cri_api::v1::Protocol::try_from(p.protocol) {
                    Ok(cri_api::v1::Protocol::Udp) => "udp",
                    Ok(cri_api::v1::Protocol::Sctp) => "sctp",
                    _ => "tcp",
                };
                serde_json::json!({"hostPort": p.host_port, "containerPort": p.container_port,
                                   "protocol": proto, "hostIP": p.host_ip})
            })
            .collect();
        if !maps.is_empty() {
            att.capability_args
                .insert("portMappings".into(), serde_json::Value::Array(maps));
        }
        let r = self
            .network
            .cni
            .add(list, &att)
            .map_err(|e| format!("attaching to network {}: {e}", list.name))?;
        Ok(r.pod_ips().iter().map(ToString::to_string).collect())
    }

    /// Detaches the pod from its network (CNI DEL from the cached ADD) and
    /// unpins its namespace; once done, remembered as done.
    fn network_down(&self, pod: &mut Pod) -> Result<(), Status> {
        if pod.network.is_empty() || pod.net_down {
            return Ok(());
        }
        let mut att = Self::attachment(pod);
        att.args.clear();
        // After a reboot the pin is gone: plugins get no netns, as the spec says.
        if !cni::netns::is_pinned(Path::new(&pod.netns)) {
            att.netns = PathBuf::new();
        }
        self.network
            .cni
            .del(None, &pod.network, &att)
            .map_err(|e| internal(&format!("detaching from network {}", pod.network), e))?;
        cni::netns::remove(Path::new(&pod.netns))
            .map_err(|e| internal("unpinning the netns", e))?;
        pod.net_down = true;
        Ok(())
    }

    /// Whether pods can get networks (for Status' NetworkReady).
    pub(crate) fn network_ready(&self) -> Result<(), String> {
        self.network.default_list().map(drop)
    }

    /// What a new container of pod `id` takes from it; the pod must be ready.
    pub(crate) fn sandbox(&self, id: &str) -> Result<Sandbox, Status> {
        let pod = self.get(id)?;
        let pid = (!pod.stopped)
            .then(|| self.rt.state(&pod.id).ok())
            .flatten()
            .filter(|s| *s.state.status() == oci_spec::runtime::ContainerState::Running)
            .and_then(|s| *s.state.pid())
            .ok_or_else(|| Status::failed_precondition(format!("pod sandbox {id} is not ready")))?;
        Ok(Sandbox {
            id: pod.id.clone(),
            name: pod.name.clone(),
            namespace: pod.namespace.clone(),
            uid: pod.uid.clone(),
            pid,
            modes: pod.modes,
            cgroup_parent: pod.cgroup_parent.clone(),
            dir: self.root.join("pods").join(&pod.id),
            hostname: pod.hostname.clone(),
            privileged: pod.privileged,
            userns: !pod.uid_map.is_empty(),
            userns_root: {
                let root = |m: &[(u32, u32, u32)]| {
                    m.iter()
                        .find(|(c, _, n)| *c == 0 && *n > 0)
                        .map_or(65534, |(_, h, _)| *h)
                };
                (root(&pod.uid_map), root(&pod.gid_map))
            },
        })
    }

    /// What the stats RPCs report of pod `id`.
    pub(crate) fn stats_info(&self, id: &str) -> Result<PodStatsInfo, Status> {
        let pod = self.get(id)?;
        let running = self.state_of(&pod) == PodSandboxState::SandboxReady;
        let pid = running
            .then(|| self.rt.state(&pod.id).ok().and_then(|s| *s.state.pid()))
            .flatten();
        Ok(PodStatsInfo {
            id: pod.id.clone(),
            metadata: PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: pod.attempt,
            },
            labels: pod.labels.clone(),
            annotations: pod.annotations.clone(),
            pid,
            own_netns: !pod.netns.is_empty(),
            pause: running.then(|| self.rt.stats(&pod.id).ok()).flatten(),
        })
    }

    /// Every pod, as now remembered.
    fn all(&self) -> Vec<Pod> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The pods that are ready.
    pub(crate) fn ready_ids(&self) -> Vec<String> {
        let pods = self.all();
        pods.iter()
            .filter(|p| self.state_of(p) == PodSandboxState::SandboxReady)
            .map(|p| p.id.clone())
            .collect()
    }

    /// Records the pod's new overhead and resources.
    pub(crate) fn update_resources(
        &self,
        id: &str,
        overhead: Option<cri_api::v1::LinuxContainerResources>,
        resources: Option<cri_api::v1::LinuxContainerResources>,
    ) -> Result<(), Status> {
        let mut pod = self.get(id)?;
        pod.resources = Some(serde_json::json!({
            "overhead": overhead.as_ref().map(super::spec::resources),
            "resources": resources.as_ref().map(super::spec::resources),
        }));
        self.save(&pod)?;
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod.id.clone(), pod);
        Ok(())
    }

    /// The pinned network namespace of ready pod `id` (`None`: the host's).
    pub(crate) fn netns_of(&self, id: &str) -> Result<Option<PathBuf>, Status> {
        let pod = self.get(id)?;
        if self.state_of(&pod) != PodSandboxState::SandboxReady {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {id} is not ready"
            )));
        }
        Ok((!pod.netns.is_empty()).then(|| PathBuf::from(&pod.netns)))
    }

    /// The pod's log directory ("" when it has none or is unknown).
    pub(crate) fn log_directory(&self, id: &str) -> String {
        self.get(id).map(|p| p.log_directory).unwrap_or_default()
    }

    fn to_cri(&self, pod: &Pod) -> PodSandbox {
        PodSandbox {
            id: pod.id.clone(),
            metadata: Some(PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: pod.attempt,
            }),
            state: self.state_of(pod) as i32,
            created_at: pod.created_at,
            labels: pod.labels.clone(),
            annotations: pod.annotations.clone(),
            runtime_handler: pod.runtime_handler.clone(),
        }
    }

    pub(crate) async fn run(
        &self,
        req: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let req = req.into_inner();
        // The request has passed `cri_api::validate`.
        let config: PodSandboxConfig = req.config.unwrap_or_default();
        let md = config.metadata.clone().unwrap_or_default();
        if !req.runtime_handler.is_empty() && req.runtime_handler != "mini-runtime" {
            return Err(invalid(
                "runtime_handler",
                &format!(
                    "{:?} is not a handler of this runtime (it has mini-runtime)",
                    req.runtime_handler
                ),
            ));
        }
        let linux = config.linux.clone().unwrap_or_default();
        let ns = linux
            .security_context
            .as_ref()
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        let list = if ns.network != NamespaceMode::Node as i32 {
            Some(
                self.network
                    .default_list()
                    .map_err(|e| Status::failed_precondition(format!("pod network: {e}")))?,
            )
        } else {
            None
        };
        let shared = |kind: &str| match kind {
            "network" => ns.network == NamespaceMode::Node as i32,
            "ipc" => ns.ipc == NamespaceMode::Node as i32,
            _ => ns.network == NamespaceMode::Node as i32,
        };
        for name in linux.sysctls.keys() {
            if let Some(kind) = sysctl_namespace(name)
                && shared(kind)
            {
                return Err(invalid(
                    &format!("config.linux.sysctls[{name}]"),
                    &format!("the pod shares the host's {kind} namespace"),
                ));
            }
            if sysctl_namespace(name).is_none() {
                return Err(invalid(
                    &format!("config.linux.sysctls[{name}]"),
                    "not a namespaced sysctl",
                ));
            }
        }
        // A user namespace of the pod's own (mode POD) with the kubelet's
        // mappings; the host's (NODE, or none given) otherwise.
        // (`cri_api::validate` has checked the mode and the mappings.)
        let (uid_map, gid_map) = match &ns.userns_options {
            Some(u) if u.mode == NamespaceMode::Pod as i32 => {
                let maps = |m: &[cri_api::v1::IdMapping]| -> Vec<(u32, u32, u32)> {
                    m.iter()
                        .map(|x| (x.container_id, x.host_id, x.length))
                        .collect()
                };
                (maps(&u.uids), maps(&u.gids))
            }
            _ => (Vec::new(), Vec::new()),
        };
        if !uid_map.is_empty() && ns.network == NamespaceMode::Node as i32 {
            return Err(invalid(
                "config.linux.security_context.namespace_options.userns_options",
                "a user namespace of the pod's own needs the pod's own network",
            ));
        }
        let id = random_id().map_err(|e| internal("making an id", e))?;
        let pod = Pod {
            id: id.clone(),
            name: md.name,
            uid: md.uid,
            namespace: md.namespace,
            attempt: md.attempt,
            created_at: now_nanos(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            runtime_handler: req.runtime_handler.clone(),
            modes: (ns.network, ns.pid, ns.ipc),
            stopped: false,
            cgroup_parent: linux.cgroup_parent.clone(),
            log_directory: config.log_directory.clone(),
            hostname: if config.hostname.is_empty() {
                host_name()
            } else {
                config.hostname.clone()
            },
            privileged: linux
                .security_context
                .as_ref()
                .is_some_and(|s| s.privileged),
            netns: if list.is_some() {
                self.root.join("netns").join(&id).display().to_string()
            } else {
                String::new()
            },
            network: list.as_ref().map(|l| l.name.clone()).unwrap_or_default(),
            ips: Vec::new(),
            net_down: false,
            sysctls: linux.sysctls.clone(),
            resources: None,
            uid_map,
            gid_map,
        };
        let spec = self.pause_spec(&pod, &linux.cgroup_parent)?;
        // One pod per (name, namespace, uid, attempt), as the kubelet
        // expects: checked and claimed under one lock, so that two requests
        // for the same pod cannot both go on.
        {
            let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = pods.values().find(|p| {
                p.name == pod.name
                    && p.namespace == pod.namespace
                    && p.uid == pod.uid
                    && p.attempt == pod.attempt
            }) {
                return Err(Status::already_exists(format!(
                    "pod {}/{} attempt {} exists as {}",
                    pod.namespace, pod.name, pod.attempt, p.id
                )));
            }
            pods.insert(id.clone(), pod.clone());
        }
        if let Err(e) = self.save(&pod) {
            self.pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(e);
        }
        let this = self.clone();
        let pod2 = pod.clone();
        let dns = config.dns_config.clone();
        let ports = config.port_mappings.clone();
        let t0 = std::time::Instant::now();
        let made = tokio::task::spawn_blocking(move || -> Result<(Vec<String>, String), String> {
            let mut phases = Vec::new();
            let mut mark = |what: &str, since: &mut std::time::Instant| {
                phases.push(format!("{what} {:.1?}", since.elapsed()));
                *since = std::time::Instant::now();
            };
            let mut t = std::time::Instant::now();
            let rootfs = this
                .pause_rootfs(&id)
                .map_err(|e| format!("pause rootfs: {e}"))?;
            this.pod_files(&pod2, dns.as_ref())
                .map_err(|e| format!("the pod's /etc files: {e}"))?;
            mark("files", &mut t);
            let userns = !pod2.uid_map.is_empty();
            // The namespace first; CNI configures it while the pause process
            // is made (it only joins it), and both must be done before start.
            let attaching = match &list {
                Some(l) if !userns => {
                    this.pin_netns(&pod2, None)?;
                    let (this, pod, l, ports) =
                        (this.clone(), pod2.clone(), l.clone(), ports.clone());
                    Some(std::thread::spawn(move || {
                        let t = std::time::Instant::now();
                        this.attach(&pod, &l, &ports).map(|ips| (ips, t.elapsed()))
                    }))
                }
                _ => None,
            };
            let mut ips = Vec::new();
            let log_path = this.root.join("pods").join(&id).join("pause.log");
            let created = this
                .rt
                .create_monitored(
                    &id,
                    oci_runtime::Source::Spec {
                        spec: Box::new(spec),
                        rootfs,
                    },
                    &MonitorOptions {
                        binary: PathBuf::from("/proc/self/exe"),
                        args: vec!["monitor".into()],
                        log_path,
                        stdin: false,
                        create: Default::default(),
                    },
                )
                .map_err(|e| chain(&e));
            mark("create", &mut t);
            if let Some(h) = attaching {
                let (got, took) = h
                    .join()
                    .map_err(|_| "the CNI thread panicked".to_string())??;
                ips = got;
                let mut beside = std::time::Instant::now() - took;
                mark("network (beside the create)", &mut beside);
                t = std::time::Instant::now();
            }
            created?;
            if let (Some(l), true) = (&list, userns) {
                let pid = this
                    .rt
                    .state(&id)
                    .ok()
                    .and_then(|s| *s.state.pid())
                    .ok_or("the pause process has no pid")?;
                let made = PathBuf::from(format!("/proc/{pid}/ns/net"));
                this.pin_netns(&pod2, Some(&made))?;
                ips = this.attach(&pod2, l, &ports)?;
                mark("network", &mut t);
            }
            this.rt.start(&id).map_err(|e| chain(&e))?;
            mark("start", &mut t);
            Ok((ips, phases.join(", ")))
        })
        .await
        .map_err(|e| internal("the pod task", e))?;
        let mut pod = pod;
        match made {
            Ok((ips, phases)) => {
                pod.ips = ips;
                self.log.log(
                    "debug",
                    &format!("pod {}: {phases}; {:.1?} in all", pod.id, t0.elapsed()),
                );
            }
            Err(e) => {
                // Nothing half-made stays: network, record and containers go.
                let _ = self.network_down(&mut pod);
                let _ = self.remove_all(&pod.id);
                return Err(Status::internal(format!("starting the pod: {e}")));
            }
        }
        self.save(&pod)?;
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod.id.clone(), pod.clone());
        self.log.log(
            "info",
            &format!("pod {}/{} is {}", pod.namespace, pod.name, pod.id),
        );
        Ok(Response::new(RunPodSandboxResponse {
            pod_sandbox_id: pod.id,
        }))
    }

    /// Kills and deletes the pause container, and forgets the pod.
    fn remove_all(&self, id: &str) -> Result<(), Status> {
        if let Ok(mut pod) = self.get(id) {
            self.network_down(&mut pod)?;
        }
        let _ = self.rt.kill(id, libc::SIGKILL, true);
        let _ = self
            .rt
            .wait_exit(id, Some(std::time::Duration::from_secs(10)));
        match self.rt.delete(id, true) {
            Ok(_) | Err(oci_runtime::Error::NotFound { .. }) => {}
            Err(e) => return Err(internal("deleting the pause container", e)),
        }
        let _ = std::fs::remove_dir_all(self.root.join("pods").join(id));
        let _ = std::fs::remove_file(self.meta.join(format!("{id}.json")));
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }

    pub(crate) async fn stop(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        if id.is_empty() {
            return Err(invalid("pod_sandbox_id", "empty"));
        }
        // Idempotent, as the CRI has it: a pod that is gone is stopped.
        let Ok(mut pod) = self.get(&id) else {
            return Ok(Response::new(StopPodSandboxResponse {}));
        };
        let this = self.clone();
        let id = pod.id.clone();
        tokio::task::spawn_blocking(move || {
            match this.rt.kill(&id, libc::SIGKILL, true) {
                Ok(()) | Err(oci_runtime::Error::NotFound { .. }) => {}
                Err(
                    oci_runtime::Error::NotRunning { .. } | oci_runtime::Error::WrongState { .. },
                ) => {}
                Err(e) => return Err(internal("stopping the pause process", e)),
            }
            let _ = this
                .rt
                .wait_exit(&id, Some(std::time::Duration::from_secs(10)));
            Ok(())
        })
        .await
        .map_err(|e| internal("the pod task", e))??;
        pod.stopped = true;
        let this = self.clone();
        let mut p = pod.clone();
        let (down, p) = tokio::task::spawn_blocking(move || (this.network_down(&mut p), p))
            .await
            .map_err(|e| internal("the pod task", e))?;
        pod = p;
        self.save(&pod)?;
        down?;
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod.id.clone(), pod);
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    pub(crate) async fn remove(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        if id.is_empty() {
            return Err(invalid("pod_sandbox_id", "empty"));
        }
        // Removing a pod that is not there is not an error.
        if self.get(&id).is_err() {
            return Ok(Response::new(RemovePodSandboxResponse {}));
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.remove_all(&id))
            .await
            .map_err(|e| internal("the pod task", e))??;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    pub(crate) async fn status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let req = req.into_inner();
        let pod = self.get(&req.pod_sandbox_id)?;
        let cri = self.to_cri(&pod);
        let mut info = HashMap::new();
        if req.verbose {
            let pid = self.rt.state(&pod.id).ok().and_then(|s| *s.state.pid());
            info.insert(
                "info".to_string(),
                serde_json::json!({"pid": pid, "record": pod}).to_string(),
            );
        }
        Ok(Response::new(PodSandboxStatusResponse {
            status: Some(PodSandboxStatus {
                id: cri.id,
                metadata: cri.metadata,
                state: cri.state,
                created_at: cri.created_at,
                network: Some(PodSandboxNetworkStatus {
                    ip: pod.ips.first().cloned().unwrap_or_default(),
                    additional_ips: pod
                        .ips
                        .iter()
                        .skip(1)
                        .map(|ip| cri_api::v1::PodIp { ip: ip.clone() })
                        .collect(),
                }),
                linux: Some(LinuxPodSandboxStatus {
                    namespaces: Some(Namespace {
                        options: Some(NamespaceOption {
                            network: pod.modes.0,
                            pid: pod.modes.1,
                            ipc: pod.modes.2,
                            ..Default::default()
                        }),
                    }),
                }),
                labels: cri.labels,
                annotations: cri.annotations,
                runtime_handler: cri.runtime_handler,
            }),
            info,
            containers_statuses: Vec::new(),
            timestamp: now_nanos(),
        }))
    }

    pub(crate) async fn list(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let pods = self.all();
        let mut items: Vec<PodSandbox> = pods
            .iter()
            .filter(|p| filter.id.is_empty() || p.id.starts_with(&filter.id))
            .filter(|p| {
                filter
                    .label_selector
                    .iter()
                    .all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .map(|p| self.to_cri(p))
            .filter(|p| filter.state.as_ref().is_none_or(|s| s.state == p.state))
            .collect();
        items.sort_by_key(|p| p.created_at);
        Ok(Response::new(ListPodSandboxResponse { items }))
    }
}

pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// 64 hex digits from the kernel's random source, as containerd's ids.
pub(crate) fn random_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The host's name, for pods on its network without one of their own.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `mini-runtime pod-infra`: the process that holds a pod's namespaces. It
/// sleeps, reaps what is reparented to it, and exits on SIGTERM or SIGINT.
pub(crate) fn pause() -> i32 {
    // SAFETY: plain signal-mask calls on a zeroed sigset of this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let mut sig = 0;
            if libc::sigwait(&set, &mut sig) != 0 {
                continue;
            }
            if sig == libc::SIGCHLD {
                while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
                continue;
            }
            return 0;
        }
    }
}
