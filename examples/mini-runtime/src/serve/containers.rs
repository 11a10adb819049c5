//! Containers of pods: a rootfs per container as an overlay over the image's
//! snapshots (image-store), the spec from the image config and the request
//! (`spec.rs`), created through oci-runtime under a monitor of its own that
//! writes the CRI log and records the exit. What the kubelet gave is kept in
//! the persistent state dir, so a restarted `serve` finds every container,
//! and after a reboot reports the ones whose state is gone as exited.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri_api::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerResources, ContainerState,
    ContainerStatus, ContainerUser, ExecSyncRequest, ExecSyncResponse, ImageSpec,
    LinuxContainerResources, LinuxContainerUser, Mount,
};
use cri_api::{Response, Status};
use image_store::{NoProgress, Store};
use oci_runtime::monitor::MonitorOptions;
use serde::{Deserialize, Serialize};

use super::Logger;
use super::pods::{Pods, now_nanos, random_id};
use super::spec::{self, Sandbox};
use super::status::{chain, from_store, internal, invalid};

/// The kubelet's cap on ExecSync output, per stream.
const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// A mount as ContainerStatus reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MountRecord {
    container_path: String,
    host_path: String,
    readonly: bool,
    propagation: i32,
    #[serde(default)]
    image: String,
}

/// What is left of an exit once the runtime state is gone.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExitRecord {
    code: i32,
    finished_at: i64,
    oom_killed: bool,
}

/// Resources as last set (for ContainerStatus).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ResourcesRecord {
    cpu_period: i64,
    cpu_quota: i64,
    cpu_shares: i64,
    memory_limit_in_bytes: i64,
    oom_score_adj: i64,
    cpuset_cpus: String,
    cpuset_mems: String,
    memory_swap_limit_in_bytes: i64,
}

impl ResourcesRecord {
    fn from_cri(r: &LinuxContainerResources) -> Self {
        Self {
            cpu_period: r.cpu_period,
            cpu_quota: r.cpu_quota,
            cpu_shares: r.cpu_shares,
            memory_limit_in_bytes: r.memory_limit_in_bytes,
            oom_score_adj: r.oom_score_adj,
            cpuset_cpus: r.cpuset_cpus.clone(),
            cpuset_mems: r.cpuset_mems.clone(),
            memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        }
    }

    fn to_cri(&self) -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpu_shares: self.cpu_shares,
            memory_limit_in_bytes: self.memory_limit_in_bytes,
            oom_score_adj: self.oom_score_adj,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            memory_swap_limit_in_bytes: self.memory_swap_limit_in_bytes,
            ..Default::default()
        }
    }
}

/// One container as the server remembers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ctr {
    id: String,
    pod_id: String,
    name: String,
    attempt: u32,
    /// The image as the request named it.
    image: String,
    /// Its name in the store, its id (config digest) and repo digest.
    image_name: String,
    image_id: String,
    image_ref: String,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    created_at: i64,
    started_at: i64,
    log_path: String,
    mounts: Vec<MountRecord>,
    stop_signal: String,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    resources: ResourcesRecord,
    /// The exit, once seen (kept for after a reboot).
    exit: Option<ExitRecord>,
    /// Whether an attach's end of stdin closes the container's (CRI's
    /// `stdin_once`), and whether it has a terminal.
    #[serde(default)]
    stdin_once: bool,
    #[serde(default)]
    tty: bool,
}

impl Ctr {
    /// The image as statuses show it: its name in the store (as containerd
    /// shows the repo tag, however the request named it), else as asked.
    fn shown_image(&self) -> String {
        if self.image_name.is_empty() || self.image_name.starts_with("sha256:") {
            self.image.clone()
        } else {
            self.image_name.clone()
        }
    }
}

/// How a container is, seen now.
struct Seen {
    state: ContainerState,
    pid: Option<i32>,
    exit: Option<ExitRecord>,
}

/// One container's figures for the stats RPCs.
#[derive(Debug)]
pub(crate) struct Sample {
    pub id: String,
    pub pod_id: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    pub running: bool,
    pub stats: Option<oci_runtime::cgroups::stats::Stats>,
    /// Its writable layer.
    pub upper: Option<PathBuf>,
    pub store_root: PathBuf,
}

/// The container side of the server.
#[derive(Debug, Clone)]
pub(crate) struct Containers {
    meta: PathBuf,
    root: PathBuf,
    rt: Arc<oci_runtime::Runtime>,
    store: Store,
    exe: PathBuf,
    log: Logger,
    pods: Pods,
    ctrs: Arc<Mutex<HashMap<String, Ctr>>>,
    cdi_dirs: Vec<PathBuf>,
}

/// Nanoseconds since the epoch of oci-runtime's RFC 3339 times
/// (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let nanos = match s.get(19..20) {
        Some(".") => {
            let frac: String = s[20..].chars().take_while(|c| c.is_ascii_digit()).collect();
            format!("{frac:0<9}").get(..9)?.parse::<i64>().ok()?
        }
        _ => 0,
    };
    // Days from civil (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000 + nanos)
}

impl Containers {
    pub(crate) fn open(
        meta: &Path,
        root: &Path,
        store: Store,
        pods: Pods,
        log: Logger,
    ) -> Result<Self, String> {
        let dir = meta.join("containers");
        let ctrs = super::records::load::<Ctr>(&dir, "container", |c| c.id.clone(), &log)?;
        // The monitor is this (protected) binary, started through the link
        // that names it: its path on disk may be writable.
        let exe = PathBuf::from("/proc/self/exe");
        let this = Self {
            meta: dir,
            root: root.to_path_buf(),
            rt: Arc::new(oci_runtime::Runtime::new(root)),
            store,
            exe,
            log,
            pods,
            ctrs: Arc::new(Mutex::new(ctrs)),
            cdi_dirs: Vec::new(),
        };
        this.sweep_half_made();
        Ok(this)
    }

    /// What a CreateContainer cut off (a kill of the server, a crash) left:
    /// a container dir, mounts and a lease, for a container with no record
    /// (a record half-written went as the records were read). All of it
    /// goes, so nothing half-made stays.
    fn sweep_half_made(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join("containers")) else {
            return;
        };
        let known: std::collections::HashSet<String> = self.lock().keys().cloned().collect();
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !known.contains(&id) && e.path().is_dir() {
                self.log.log(
                    "warn",
                    &format!("removing container {id}, left half-made by an earlier run"),
                );
                self.undo(&id);
            }
        }
    }

    /// Where CDIDevices are looked up.
    pub(crate) fn with_cdi_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.cdi_dirs = dirs;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ctr>> {
        self.ctrs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, c: &Ctr) -> Result<(), Status> {
        super::records::save(&self.meta, &c.id, "container", c)?;
        self.lock().insert(c.id.clone(), c.clone());
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Ctr, Status> {
        if id.is_empty() {
            return Err(invalid("container_id", "empty"));
        }
        let map = self.lock();
        if let Some(c) = map.get(id) {
            return Ok(c.clone());
        }
        // A unique prefix names a container too, as with containerd.
        let mut found = map.values().filter(|c| c.id.starts_with(id));
        match (found.next(), found.next()) {
            (Some(c), None) => Ok(c.clone()),
            (Some(_), Some(_)) => Err(invalid(
                "container_id",
                &format!("{id:?} names more than one container"),
            )),
            _ => Err(Status::not_found(format!("container {id} not found"))),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// How container `c` is now.
    fn seen(&self, c: &Ctr) -> Seen {
        match self.rt.state(&c.id) {
            Ok(info) => {
                use oci_spec::runtime::ContainerState as S;
                match info.state.status() {
                    S::Creating | S::Created => Seen {
                        state: ContainerState::ContainerCreated,
                        pid: *info.state.pid(),
                        exit: None,
                    },
                    S::Running => Seen {
                        state: ContainerState::ContainerRunning,
                        pid: *info.state.pid(),
                        exit: None,
                    },
                    S::Stopped => {
                        let exit = match info.exit_status {
                            Some(code) => Some(ExitRecord {
                                code,
                                finished_at: info
                                    .exit_time
                                    .as_deref()
                                    .and_then(parse_rfc3339)
                                    .unwrap_or(0),
                                oom_killed: info.oom_killed,
                            }),
                            // The monitor records it a moment after the exit.
                            None => self
                                .rt
                                .wait_exit(&c.id, Some(Duration::from_secs(2)))
                                .ok()
                                .map(|e| ExitRecord {
                                    code: e.code,
                                    finished_at: e
                                        .time
                                        .as_deref()
                                        .and_then(parse_rfc3339)
                                        .unwrap_or(0),
                                    oom_killed: e.oom_killed,
                                }),
                        };
                        Seen {
                            state: ContainerState::ContainerExited,
                            pid: None,
                            exit: exit.or_else(|| c.exit.clone()),
                        }
                    }
                }
            }
            // No runtime state: gone with a reboot (or removed by hand).
            Err(_) => Seen {
                state: ContainerState::ContainerExited,
                pid: None,
                exit: c.exit.clone(),
            },
        }
    }

    /// The pod of a new container, which must be ready.
    fn sandbox(&self, pod_id: &str) -> Result<Sandbox, Status> {
        self.pods.sandbox(pod_id)
    }

    pub(crate) async fn create(
        &self,
        pod_id: String,
        cfg: ContainerConfig,
    ) -> Result<Response<cri_api::v1::CreateContainerResponse>, Status> {
        // The request has passed `cri_api::validate`.
        let md = cfg.metadata.clone().unwrap_or_default();
        let wanted = cfg
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let sb = self.sandbox(&pod_id)?;
        let id = random_id().map_err(|e| internal("making an id", e))?;
        let log_path = if cfg.log_path.is_empty() {
            String::new()
        } else {
            let dir = self.pods.log_directory(&pod_id);
            if dir.is_empty() && !cfg.log_path.starts_with('/') {
                return Err(invalid(
                    "config.log_path",
                    "relative, and the pod has no log_directory",
                ));
            }
            Path::new(&dir).join(&cfg.log_path).display().to_string()
        };
        // One container per (pod, name, attempt): claimed under one lock.
        let mut ctr = Ctr {
            id: id.clone(),
            pod_id: pod_id.clone(),
            name: md.name.clone(),
            attempt: md.attempt,
            image: wanted.clone(),
            image_name: String::new(),
            image_id: String::new(),
            image_ref: String::new(),
            labels: cfg.labels.clone(),
            annotations: cfg.annotations.clone(),
            created_at: now_nanos(),
            started_at: 0,
            log_path: log_path.clone(),
            mounts: cfg
                .mounts
                .iter()
                .map(|m| MountRecord {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.readonly,
                    propagation: m.propagation,
                    image: m
                        .image
                        .as_ref()
                        .map(|i| i.image.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            stop_signal: String::new(),
            stdin_once: cfg.stdin_once,
            tty: cfg.tty,
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            resources: ResourcesRecord::from_cri(
                &cfg.linux
                    .as_ref()
                    .and_then(|l| l.resources.clone())
                    .unwrap_or_default(),
            ),
            exit: None,
        };
        {
            let mut map = self.lock();
            if let Some(c) = map
                .values()
                .find(|c| c.pod_id == pod_id && c.name == ctr.name && c.attempt == ctr.attempt)
            {
                return Err(Status::already_exists(format!(
                    "container {} attempt {} exists in pod {pod_id} as {}",
                    ctr.name, ctr.attempt, c.id
                )));
            }
            map.insert(id.clone(), ctr.clone());
        }
        let this = self.clone();
        let made = tokio::task::spawn_blocking(move || -> Result<Ctr, Status> {
            let res = this.make(&mut ctr, &cfg, &sb);
            match res {
                Ok(()) => Ok(ctr),
                Err(e) => {
                    this.undo(&ctr.id);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| internal("the container task", e))?;
        let ctr = match made {
            Ok(c) => c,
            Err(e) => {
                self.lock().remove(&id);
                return Err(e);
            }
        };
        self.log.log(
            "info",
            &format!("container {} of pod {} is {}", ctr.name, pod_id, ctr.id),
        );
        Ok(Response::new(cri_api::v1::CreateContainerResponse {
            container_id: ctr.id,
        }))
    }

    /// Mounts the rootfs and image volumes, builds the spec, creates the
    /// container under its monitor, and saves the record.
    fn make(&self, ctr: &mut Ctr, cfg: &ContainerConfig, sb: &Sandbox) -> Result<(), Status> {
        let image = self
            .store
            .find(&ctr.image)
            .map_err(from_store)?
            .ok_or_else(|| Status::not_found(format!("image {:?} not found", ctr.image)))?;
        ctr.image_name = image.name.clone();
        ctr.image_id = image.config.digest_str.clone();
        ctr.image_ref = repo_digest(&image.name, &image.manifest.digest_str);
        let config = self.store.config(&image).map_err(from_store)?;
        let dir = self.dir(&ctr.id);
        let rootfs = dir.join("rootfs");
        // In a pod with a user namespace the rootfs is id-mapped into it,
        // so the container's root owns what the host's root owns.
        if sb.userns {
            let ns = PathBuf::from(format!("/proc/{}/ns/user", sb.pid));
            self.store
                .mount_in_userns(&image.name, &rootfs, &NoProgress, &ns, sb.userns_root)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
        } else {
            self.store
                .mount(&image.name, &rootfs, &NoProgress)
                .map_err(from_store)?;
        }
        let mut image_mounts = HashMap::new();
        for (i, m) in cfg.mounts.iter().enumerate() {
            let Some(spec) = m.image.as_ref().filter(|s| !s.image.is_empty()) else {
                continue;
            };
            let vol = self
                .store
                .find(&spec.image)
                .map_err(from_store)?
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "mounts[{i}].image: image {:?} not found",
                        spec.image
                    ))
                })?;
            let at = dir.join("volumes").join(i.to_string());
            self.store
                .mount(&vol.name, &at, &NoProgress)
                .map_err(from_store)?;
            image_mounts.insert(m.container_path.clone(), at);
        }
        let targets = |target: &str| -> Option<i32> {
            let c = self.get(target).ok()?;
            (c.pod_id == ctr.pod_id)
                .then(|| self.seen(&c).pid)
                .flatten()
        };
        let built = spec::container_spec(
            &ctr.id,
            cfg,
            &image.name,
            &config,
            &rootfs,
            sb,
            &image_mounts,
            &targets,
        )?;
        let mut built = built;
        let cdi: Vec<String> = cfg.cdi_devices.iter().map(|d| d.name.clone()).collect();
        oci_runtime::cdi::apply(&mut built.spec, &cdi, &self.cdi_dirs)
            .map_err(|e| invalid("config.CDI_devices", &e.to_string()))?;
        ctr.stop_signal = built.stop_signal;
        ctr.uid = built.uid;
        ctr.gid = built.gid;
        ctr.groups = built.groups;
        let log_path = if ctr.log_path.is_empty() {
            dir.join("output.log")
        } else {
            PathBuf::from(&ctr.log_path)
        };
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| internal(&format!("creating {}", parent.display()), e))?;
        }
        self.save(ctr)?;
        self.rt
            .create_monitored(
                &ctr.id,
                oci_runtime::Source::Spec {
                    spec: Box::new(built.spec),
                    rootfs,
                },
                &MonitorOptions {
                    binary: self.exe.clone(),
                    args: vec!["monitor".into()],
                    log_path,
                    stdin: cfg.stdin,
                    create: Default::default(),
                },
            )
            .map_err(|e| match e {
                oci_runtime::Error::InvalidConfig { .. }
                | oci_runtime::Error::ImageConfig { .. } => {
                    Status::invalid_argument(format!("creating the container: {}", chain(&e)))
                }
                e => Status::internal(format!("creating the container: {}", chain(&e))),
            })?;
        Ok(())
    }

    /// Removes whatever a container has: runtime state, mounts, dirs and record.
    fn undo(&self, id: &str) {
        let _ = self.rt.delete(id, true);
        let dir = self.dir(id);
        if let Ok(entries) = std::fs::read_dir(dir.join("volumes")) {
            for e in entries.flatten() {
                let _ = self.store.umount(&e.path());
            }
        }
        let rootfs = dir.join("rootfs");
        // After a reboot the mount point is gone, the store's record of it not.
        let _ = std::fs::create_dir_all(&rootfs);
        let _ = self.store.umount(&rootfs);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(self.meta.join(format!("{id}.json")));
        self.lock().remove(id);
    }

    pub(crate) async fn start(&self, id: &str) -> Result<(), Status> {
        let mut c = self.get(id)?;
        let this = self.clone();
        let cid = c.id.clone();
        tokio::task::spawn_blocking(move || match this.rt.start(&cid) {
            Ok(_) => Ok(()),
            Err(e @ oci_runtime::Error::WrongState { .. }) => Err(Status::failed_precondition(
                format!("container {cid} cannot start: {e}"),
            )),
            Err(oci_runtime::Error::NotFound { .. }) => Err(Status::failed_precondition(format!(
                "container {cid} has no runtime state (the host rebooted?): it can only be removed"
            ))),
            Err(e) => Err(internal("starting the container", e)),
        })
        .await
        .map_err(|e| internal("the container task", e))??;
        c.started_at = now_nanos();
        self.save(&c)
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout`.
    pub(crate) async fn stop(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let c = match self.get(id) {
            Ok(c) => c,
            // Stopping a container that is not there is not an error.
            Err(s) if s.code() == cri_api::Code::NotFound => return Ok(()),
            Err(s) => return Err(s),
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.stop_blocking(&c, timeout))
            .await
            .map_err(|e| internal("the container task", e))?
    }

    fn stop_blocking(&self, c: &Ctr, timeout: i64) -> Result<(), Status> {
        let seen = self.seen(c);
        if seen.state == ContainerState::ContainerRunning {
            let sig = oci_runtime::parse_signal(&c.stop_signal).unwrap_or(libc::SIGTERM);
            if timeout > 0 && sig != libc::SIGKILL {
                match self.rt.kill(&c.id, sig, false) {
                    Ok(()) | Err(oci_runtime::Error::NotRunning { .. }) => {}
                    Err(e) => return Err(internal("signalling the container", e)),
                }
                let t = Duration::from_secs(timeout.unsigned_abs());
                if self.rt.wait_exit(&c.id, Some(t)).is_ok() {
                    return self.note_exit(c);
                }
            }
        } else if seen.state != ContainerState::ContainerCreated {
            return self.note_exit(c);
        }
        match self.rt.kill(&c.id, libc::SIGKILL, true) {
            Ok(()) | Err(oci_runtime::Error::NotRunning { .. }) => {}
            Err(oci_runtime::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(internal("killing the container", e)),
        }
        // A created container never started: deleting its init ends it.
        if seen.state == ContainerState::ContainerCreated {
            return Ok(());
        }
        self.rt
            .wait_exit(&c.id, Some(Duration::from_secs(30)))
            .map_err(|e| internal("waiting for the container to exit", e))?;
        self.note_exit(c)
    }

    /// Keeps the exit in the record, for after a reboot.
    fn note_exit(&self, c: &Ctr) -> Result<(), Status> {
        let Ok(mut c) = self.get(&c.id) else {
            return Ok(());
        };
        if c.exit.is_none()
            && let Some(e) = self.seen(&c).exit
        {
            c.exit = Some(e);
            self.save(&c)?;
        }
        Ok(())
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), Status> {
        let c = match self.get(id) {
            Ok(c) => c,
            // Removing a container that is not there is not an error.
            Err(s) if s.code() == cri_api::Code::NotFound => return Ok(()),
            Err(s) => return Err(s),
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            match this.rt.delete(&c.id, true) {
                Ok(_) | Err(oci_runtime::Error::NotFound { .. }) => {}
                Err(e) => return Err(internal("deleting the container", e)),
            }
            this.undo(&c.id);
            Ok(())
        })
        .await
        .map_err(|e| internal("the container task", e))?
    }

    /// What stats report of container `id` now.
    pub(crate) fn sample(&self, id: &str) -> Result<Sample, Status> {
        let c = self.get(id)?;
        let seen = self.seen(&c);
        let stats = if seen.state == ContainerState::ContainerRunning {
            self.rt.stats(&c.id).ok()
        } else {
            None
        };
        let upper = self.store.mount_upper(&self.dir(&c.id).join("rootfs")).ok();
        Ok(Sample {
            id: c.id.clone(),
            pod_id: c.pod_id.clone(),
            name: c.name.clone(),
            attempt: c.attempt,
            image: c.image.clone(),
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            running: seen.state == ContainerState::ContainerRunning,
            stats,
            upper,
            store_root: self.store.root().to_path_buf(),
        })
    }

    /// Every container id.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The runtime the containers are in.
    pub(crate) fn runtime(&self) -> &oci_runtime::Runtime {
        &self.rt
    }

    /// Every container that runs now, with its pod.
    pub(crate) fn running(&self) -> Vec<(String, String)> {
        let all: Vec<Ctr> = self.lock().values().cloned().collect();
        all.into_iter()
            .filter(|c| self.seen(c).state == ContainerState::ContainerRunning)
            .map(|c| (c.id, c.pod_id))
            .collect()
    }

    /// The pod of container `id`.
    pub(crate) fn pod_of(&self, id: &str) -> Option<(String, String)> {
        self.get(id).ok().map(|c| (c.id, c.pod_id))
    }

    /// The containers of pod `pod_id`.
    pub(crate) fn of_pod(&self, pod_id: &str) -> Vec<String> {
        self.lock()
            .values()
            .filter(|c| c.pod_id == pod_id)
            .map(|c| c.id.clone())
            .collect()
    }

    fn to_status(&self, c: &Ctr) -> ContainerStatus {
        let seen = self.seen(c);
        let (exit_code, finished_at, reason) = match (&seen.state, &seen.exit) {
            (ContainerState::ContainerExited, Some(e)) => (
                e.code,
                e.finished_at,
                if e.oom_killed {
                    "OOMKilled"
                } else if e.code == 0 {
                    "Completed"
                } else {
                    "Error"
                },
            ),
            (ContainerState::ContainerExited, None) => (255, 0, "Unknown"),
            _ => (0, 0, ""),
        };
        ContainerStatus {
            id: c.id.clone(),
            metadata: Some(ContainerMetadata {
                name: c.name.clone(),
                attempt: c.attempt,
            }),
            state: seen.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at,
            exit_code,
            image: Some(ImageSpec {
                image: c.shown_image(),
                ..Default::default()
            }),
            image_ref: c.image_ref.clone(),
            image_id: c.image_id.clone(),
            reason: reason.into(),
            message: if reason == "Unknown" {
                "the container's runtime state is gone (the host rebooted?)".into()
            } else {
                String::new()
            },
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            mounts: c
                .mounts
                .iter()
                .map(|m| Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.readonly,
                    propagation: m.propagation,
                    image: (!m.image.is_empty()).then(|| ImageSpec {
                        image: m.image.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            log_path: c.log_path.clone(),
            resources: Some(ContainerResources {
                linux: Some(c.resources.to_cri()),
                windows: None,
            }),
            user: Some(ContainerUser {
                linux: Some(LinuxContainerUser {
                    uid: i64::from(c.uid),
                    gid: i64::from(c.gid),
                    supplemental_groups: c.groups.iter().map(|g| i64::from(*g)).collect(),
                }),
            }),
            stop_signal: signal_enum(&c.stop_signal),
        }
    }

    pub(crate) async fn status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(ContainerStatus, HashMap<String, String>), Status> {
        let c = self.get(id)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let st = this.to_status(&c);
            let mut info = HashMap::new();
            if verbose {
                let pid = this.seen(&c).pid;
                let spec = std::fs::read_to_string(this.root.join(&c.id).join("config.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
                info.insert(
                    "info".into(),
                    serde_json::json!({"pid": pid, "sandboxID": c.pod_id,
                        "runtimeSpec": spec, "record": c})
                    .to_string(),
                );
            }
            (st, info)
        })
        .await
        .map_err(|e| internal("the container task", e))
        .map(Ok)?
    }

    pub(crate) async fn list(
        &self,
        filter: Option<ContainerFilter>,
    ) -> Result<Vec<cri_api::v1::Container>, Status> {
        let filter = filter.unwrap_or_default();
        let all: Vec<Ctr> = self.lock().values().cloned().collect();
        let this = self.clone();
        let mut out = tokio::task::spawn_blocking(move || {
            all.iter()
                .filter(|c| filter.id.is_empty() || c.id.starts_with(&filter.id))
                .filter(|c| filter.pod_sandbox_id.is_empty() || c.pod_id == filter.pod_sandbox_id)
                .filter(|c| {
                    filter
                        .label_selector
                        .iter()
                        .all(|(k, v)| c.labels.get(k) == Some(v))
                })
                .map(|c| (c, this.seen(c).state as i32))
                .filter(|(_, s)| filter.state.as_ref().is_none_or(|f| f.state == *s))
                .map(|(c, state)| cri_api::v1::Container {
                    id: c.id.clone(),
                    pod_sandbox_id: c.pod_id.clone(),
                    metadata: Some(ContainerMetadata {
                        name: c.name.clone(),
                        attempt: c.attempt,
                    }),
                    image: Some(ImageSpec {
                        image: c.shown_image(),
                        ..Default::default()
                    }),
                    image_ref: c.image_ref.clone(),
                    image_id: c.image_id.clone(),
                    state,
                    created_at: c.created_at,
                    labels: c.labels.clone(),
                    annotations: c.annotations.clone(),
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| internal("the container task", e))?;
        out.sort_by_key(|c| c.created_at);
        Ok(out)
    }

    pub(crate) async fn exec_sync(
        &self,
        req: ExecSyncRequest,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let c = self.get(&req.container_id)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.exec_blocking(&c, &req.cmd, req.timeout))
            .await
            .map_err(|e| internal("the exec task", e))?
            .map(Response::new)
    }

    fn exec_blocking(
        &self,
        c: &Ctr,
        cmd: &[String],
        timeout: i64,
    ) -> Result<ExecSyncResponse, Status> {
        if self.seen(c).state != ContainerState::ContainerRunning {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        let mut process = self
            .rt
            .base_process(&c.id)
            .map_err(|e| internal("reading the container's process", e))?;
        process.set_args(Some(cmd.to_vec()));
        process.set_terminal(Some(false));
        let p = self
            .rt
            .exec_process(
                &c.id,
                &process,
                &oci_runtime::ExecOptions::default(),
                oci_runtime::Stdio {
                    stdin: oci_runtime::Stream::Null,
                    stdout: oci_runtime::Stream::Pipe,
                    stderr: oci_runtime::Stream::Pipe,
                },
            )
            .map_err(|e| match e {
                oci_runtime::Error::InvalidConfig { .. } => {
                    Status::invalid_argument(format!("exec in {}: {e}", c.id))
                }
                e => Status::internal(format!("exec in {}: {e}", c.id)),
            })?;
        let read = |f: Option<std::fs::File>| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let Some(mut f) = f else { return kept };
                let mut buf = [0u8; 64 * 1024];
                loop {
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                            kept.extend_from_slice(&buf[..n.min(room)]);
                        }
                    }
                }
                kept
            })
        };
        let mut p = p;
        let (out, err) = (read(p.stdout.take()), read(p.stderr.take()));
        let ms = if timeout == 0 {
            -1
        } else {
            i32::try_from(timeout.saturating_mul(1000)).unwrap_or(i32::MAX)
        };
        let mut pfd = libc::pollfd {
            fd: p.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = loop {
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n >= 0 {
                break n > 0;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break true;
            }
        };
        if !ready {
            // SAFETY: a plain signal to the pid this pidfd still pins.
            unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, pfd.fd, libc::SIGKILL, 0, 0);
            }
            let _ = p.wait();
            return Err(Status::deadline_exceeded(format!(
                "command {cmd:?} in container {} timed out after {timeout}s",
                c.id
            )));
        }
        let code = p.wait().map_err(|e| internal("waiting for the exec", e))?;
        Ok(ExecSyncResponse {
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
            exit_code: code,
        })
    }

    /// Checks that container `id` runs; its full id.
    pub(crate) fn running_id(&self, id: &str) -> Result<String, Status> {
        let c = self.get(id)?;
        if self.seen(&c).state != ContainerState::ContainerRunning {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        Ok(c.id)
    }

    /// Whether the end of an attach's stdin closes container `id`'s stdin:
    /// with `stdin_once` and no terminal, as containerd has it. Otherwise
    /// it ends the attach, and the container's stdin stays open for the
    /// next.
    pub(crate) fn closes_stdin_on_detach(&self, id: &str) -> Result<bool, Status> {
        let c = self.get(id)?;
        Ok(c.stdin_once && !c.tty)
    }

    /// Starts `cmd` in container `id` for a stream: with a terminal, or
    /// with pipes for the streams asked for (else `/dev/null`).
    pub(crate) fn exec_for_stream(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        streams: (bool, bool, bool),
    ) -> Result<oci_runtime::ExecProcess, String> {
        let mut process = self.rt.base_process(id).map_err(|e| chain(&e))?;
        process.set_args(Some(cmd.to_vec()));
        process.set_terminal(Some(tty));
        let pick = |want: bool| {
            if tty {
                oci_runtime::Stream::Inherit
            } else if want {
                oci_runtime::Stream::Pipe
            } else {
                oci_runtime::Stream::Null
            }
        };
        self.rt
            .exec_process(
                id,
                &process,
                &oci_runtime::ExecOptions::default(),
                oci_runtime::Stdio {
                    stdin: pick(streams.0),
                    stdout: pick(streams.1),
                    stderr: pick(streams.2),
                },
            )
            .map_err(|e| chain(&e))
    }

    pub(crate) async fn update_resources(
        &self,
        id: &str,
        r: Option<LinuxContainerResources>,
    ) -> Result<(), Status> {
        let mut c = self.get(id)?;
        let Some(r) = r else {
            return Ok(());
        };
        let value = spec::resources(&r);
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_value(value).map_err(|e| internal("building the resources", e))?;
        let this = self.clone();
        let cid = c.id.clone();
        tokio::task::spawn_blocking(move || this.rt.update(&cid, &res))
            .await
            .map_err(|e| internal("the container task", e))?
            .map_err(|e| match e {
                oci_runtime::Error::NotFound { .. } | oci_runtime::Error::WrongState { .. } => {
                    Status::failed_precondition(format!("updating {id}: {e}"))
                }
                e => Status::internal(format!("updating {id}: {e}")),
            })?;
        let adj = c.resources.oom_score_adj;
        c.resources = ResourcesRecord::from_cri(&r);
        c.resources.oom_score_adj = adj;
        self.save(&c)
    }

    pub(crate) async fn reopen_log(&self, id: &str) -> Result<(), Status> {
        let c = self.get(id)?;
        if self.seen(&c).state != ContainerState::ContainerRunning {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        let this = self.clone();
        let cid = c.id.clone();
        tokio::task::spawn_blocking(move || this.rt.reopen_log(&cid))
            .await
            .map_err(|e| internal("the container task", e))?
            .map_err(|e| match e {
                oci_runtime::Error::NotRunning { .. } => Status::failed_precondition(e.to_string()),
                e => internal("reopening the log", e),
            })?;
        Ok(())
    }
}

/// `repo@digest` for an image named `repo:tag` (or already by digest).
fn repo_digest(name: &str, digest: &str) -> String {
    let repo = match name.rsplit_once('@') {
        Some((r, _)) => r,
        None => match name.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => name,
        },
    };
    format!("{repo}@{digest}")
}

/// A signal name as the CRI's enum.
fn signal_enum(name: &str) -> i32 {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else if let Ok(n) = upper.parse::<i32>() {
        // A number: the name the kernel gives it.
        let names = [
            (1, "SIGHUP"),
            (2, "SIGINT"),
            (3, "SIGQUIT"),
            (9, "SIGKILL"),
            (10, "SIGUSR1"),
            (12, "SIGUSR2"),
            (15, "SIGTERM"),
        ];
        names
            .iter()
            .find(|(k, _)| *k == n)
            .map_or(String::new(), |(_, v)| v.to_string())
    } else {
        format!("SIG{upper}")
    };
    cri_api::v1::Signal::from_str_name(&full).map_or(0, |s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_the_runtime_format() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000000000Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:01.5Z"),
            Some(951_782_401_500_000_000)
        );
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn repo_digests_and_signals() {
        assert_eq!(
            repo_digest("docker.io/library/busybox:1", "sha256:ab"),
            "docker.io/library/busybox@sha256:ab"
        );
        assert_eq!(
            repo_digest("127.0.0.1:5000/bb", "sha256:ab"),
            "127.0.0.1:5000/bb@sha256:ab"
        );
        assert_eq!(signal_enum("SIGTERM"), cri_api::v1::Signal::Sigterm as i32);
        assert_eq!(signal_enum("quit"), cri_api::v1::Signal::Sigquit as i32);
        assert_eq!(signal_enum("9"), cri_api::v1::Signal::Sigkill as i32);
    }
}
