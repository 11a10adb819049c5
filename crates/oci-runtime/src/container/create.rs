//! `create`: validate, plan, spawn the init and leave it waiting for `start`.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{ContainerState, LinuxNamespaceType, LinuxResources};

use super::{Runtime, current_user, detach_mounts, mount_id, state_json, write_pid_file};
use crate::cgroups::{Cgroups, JoinFds, Manager};
use crate::config::{Bundle, validate_id};
use crate::error::{Error, Result, io_err};
use crate::plan::{self, PlanOptions};
use crate::spawn::{SpawnIo, spawn};
use crate::state::{Locked, Saved, rfc3339};
use crate::{hooks, procfs};

/// Options of `create` (and `run`), as runc's flags name them.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Unix socket that receives the pty master when `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// File to write the init's host pid to.
    pub pid_file: Option<PathBuf>,
    /// Use `MS_MOVE` + `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of joining a new one named after the id.
    pub no_new_keyring: bool,
    /// Pass fds 3..3+N of the caller to the container process.
    pub preserve_fds: u32,
}

/// How a container's init gets its stdio, beyond what [`CreateOptions`] says.
#[derive(Debug, Default)]
pub(super) struct InitIo {
    /// Fds 0..2 of the process; `None` keeps the caller's.
    pub(super) stdio: [Option<OwnedFd>; 3],
    /// With `process.terminal` and no console socket: return the pty master.
    pub(super) want_master: bool,
    /// The spec came from memory: write it into the state dir, its bundle.
    pub(super) write_config: bool,
}

/// The fds the init's stdio comes from.
struct InitFds {
    /// The connected console socket, for `process.terminal`.
    console: Option<OwnedFd>,
    /// Fds 0..2, `None` for the caller's.
    stdio: [Option<OwnedFd>; 3],
}

/// Creates the container's cgroups, writes its limits and opens what the init
/// needs to start in them; on failure nothing of them is left.
fn prepare_cgroups(cg: &Cgroups, r: Option<&LinuxResources>) -> Result<JoinFds> {
    cg.create(r)?;
    let res = r
        .map_or(Ok(()), |r| cg.apply(r))
        .and_then(|()| cg.join_fds());
    if res.is_err() {
        let _ = cg.destroy();
    }
    res
}

impl Runtime {
    /// Creates container `id` from the bundle at `bundle`: namespaces, rootfs and
    /// process set up, the payload not yet exec'd. Returns the init's host pid.
    ///
    /// The init is a child of the calling process; whoever outlives it should reap
    /// it ([`Runtime::wait`], [`Runtime::delete`]). Nothing is left behind on failure.
    pub fn create(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<i32> {
        validate_id(id)?;
        let bundle = Bundle::load(bundle)?;
        self.create_bundle(id, bundle, opts)
    }

    /// [`Runtime::create`] of a bundle the caller has already loaded (and
    /// perhaps looked into), so that its `config.json` is read once.
    pub fn create_bundle(&self, id: &str, bundle: Bundle, opts: &CreateOptions) -> Result<i32> {
        validate_id(id)?;
        crate::timeline::mark("bundle loaded (config.json parsed and validated)");
        self.create_loaded(id, bundle, opts, InitIo::default())
            .map(|(pid, _)| pid)
    }

    /// `create` of a loaded bundle, with the stdio of [`InitIo`]; returns the
    /// init's pid and, when `io.want_master`, the pty master.
    pub(super) fn create_loaded(
        &self,
        id: &str,
        bundle: Bundle,
        opts: &CreateOptions,
        io: InitIo,
    ) -> Result<(i32, Option<OwnedFd>)> {
        if crate::exe::needs_protected_exe(&bundle.spec) {
            crate::exe::require_protected_exe("create in a shared pid namespace")?;
        }
        let cgroups = self.container_cgroups(id, bundle.spec.linux().as_ref())?;
        crate::timeline::mark("cgroup layout detected");
        let plan = plan::build(
            &bundle,
            &PlanOptions {
                no_pivot: opts.no_pivot,
                session_keyring: (!opts.no_new_keyring).then(|| id.to_string()),
                cgroup_hierarchies: cgroups.as_ref().map(|c| c.hierarchies.clone()),
                seccomp_cache: Some(self.seccomp_cache()),
            },
            &self.proc_root,
        )?;
        crate::timeline::mark("plan built");
        let (console, master_rx) = super::console_io(
            opts.console_socket.as_deref(),
            plan.process.terminal,
            io.stdio.iter().any(Option::is_some),
            io.want_master,
        )?;
        let linux = bundle.spec.linux().as_ref();
        let own_pid_ns = linux
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|n| {
                n.iter()
                    .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
            });
        let mut saved = Saved {
            id: id.to_string(),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            pid: 0,
            start_time: 0,
            created: rfc3339(std::time::SystemTime::now()),
            started: false,
            creating: false,
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            exit_status: None,
            exit_time: None,
            oom_killed: false,
            own_pid_ns,
            shares_mount_ns: plan
                .rootfs
                .as_ref()
                .is_some_and(|r| r.enter.shares_mount_ns()),
            cgroups,
            hooks: bundle.spec.hooks().clone(),
            seccomp: linux.and_then(|l| l.seccomp().clone()),
            owner: current_user(),
        };
        // Device rules always: runc's defaults confine even a config that names none.
        let resources = saved.cgroups.is_some().then(|| {
            let mut r = linux
                .and_then(|l| l.resources().clone())
                .unwrap_or_default();
            r.set_devices(Some(crate::cgroups::devices::container_rules(linux)));
            r
        });
        let resources = resources.as_ref();
        let locked = Locked::create(&self.root, id, &saved)?;
        if io.write_config {
            // A spec given in memory: the state dir is its bundle, so that
            // hooks, `exec` and other tools find its config.json there.
            if let Err(e) = bundle.spec.save(bundle.dir.join("config.json")) {
                let _ = locked.remove();
                return Err(crate::error::invalid(
                    "config.json",
                    format!("writing it into the state dir: {e}"),
                ));
            }
        }
        let mount_before = saved.shares_mount_ns.then(|| mount_id(&saved.rootfs));
        let spawned = self
            .spawn_init(
                &locked,
                &plan,
                &mut saved,
                InitFds {
                    console,
                    stdio: io.stdio,
                },
                opts,
                resources,
            )
            .and_then(|pid| match master_rx {
                None => Ok((pid, None)),
                Some(rx) => match crate::console::receive_pty_master(&rx) {
                    Ok(m) => Ok((pid, Some(m))),
                    Err(e) => {
                        super::kill_child(pid);
                        if let Some(cg) = &saved.cgroups {
                            let _ = cg.destroy();
                        }
                        Err(e)
                    }
                },
            });
        match spawned {
            Ok(r) => Ok(r),
            Err(e) => {
                // In the caller's mount namespace, a failed init leaves its mounts
                // behind: detach them, but only if its rootfs bind got made.
                if let Some(before) = mount_before
                    && mount_id(&saved.rootfs) != before
                {
                    let _ = detach_mounts(&saved.rootfs);
                }
                let _ = locked.remove();
                Err(e)
            }
        }
    }

    fn spawn_init(
        &self,
        locked: &Locked,
        plan: &plan::InitPlan,
        saved: &mut Saved,
        fds: InitFds,
        opts: &CreateOptions,
        resources: Option<&LinuxResources>,
    ) -> Result<i32> {
        let InitFds { console, stdio } = fds;
        let fifo_path = locked.fifo();
        let c = CString::new(fifo_path.as_os_str().as_bytes()).map_err(|_| Error::InvalidId {
            id: saved.id.clone(),
            reason: "contains a NUL byte",
        })?;
        nix::unistd::mkfifo(
            c.as_c_str(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| io_err("creating exec fifo", &fifo_path)(e.into()))?;
        // Read-write so the open does not block; the init blocks reading it until `start` writes.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&fifo_path)
            .map_err(io_err("opening exec fifo", &fifo_path))?;
        let hooks = saved.hooks.clone();
        let base = saved.clone();
        let mut on_hooks = |pid: i32| -> Result<Vec<u8>> {
            let mut s = base.clone();
            s.pid = pid;
            s.start_time = procfs::stat(&self.proc_root, pid).map(|x| x.0).unwrap_or(0);
            // Recorded before the hooks run, so that a hook can find the container.
            s.creating = true;
            locked.save(&s)?;
            let mut info = self.info(&s);
            info.state.set_status(ContainerState::Creating);
            info.state.set_pid(Some(pid));
            let json = state_json(&info);
            let h = hooks.as_ref();
            hooks::run("prestart", h.and_then(|h| h.prestart().as_ref()), &json)?;
            hooks::run(
                "createRuntime",
                h.and_then(|h| h.create_runtime().as_ref()),
                &json,
            )?;
            info.state.set_status(ContainerState::Created);
            Ok(state_json(&info))
        };
        // The longest state the container-side hooks can be sent: the most digits
        // a pid has, the longest status name.
        let state_capacity = {
            let mut info = self.info(saved);
            info.state.set_status(ContainerState::Creating);
            info.state.set_pid(Some(i32::MAX));
            state_json(&info).len()
        };
        crate::timeline::mark("exec fifo made");
        let cgroup = match &saved.cgroups {
            Some(cg) => prepare_cgroups(cg, resources)?,
            None => Default::default(),
        };
        crate::timeline::mark("cgroups made, limits and device rules written");
        let mut agent_state = {
            let mut info = self.info(saved);
            info.state.set_status(ContainerState::Creating);
            serde_json::to_value(&info.state).unwrap_or_default()
        };
        if plan
            .process
            .seccomp
            .as_ref()
            .and_then(|f| f.listener())
            .is_none()
        {
            agent_state = serde_json::Value::Null;
        }
        let io = SpawnIo {
            agent_state,
            cgroup,
            fifo: Some(fifo.into()),
            console,
            preserve_fds: opts.preserve_fds,
            exec_root: None,
            wait_exec: false,
            pidfd: None,
            state_capacity,
            stdio,
        };
        let pid = match spawn(plan, io, &mut on_hooks) {
            Ok(pid) => pid,
            Err(e) => {
                if let Some(cg) = &saved.cgroups {
                    let _ = cg.destroy();
                }
                return Err(e);
            }
        };
        crate::timeline::mark("init ready (spawn returned)");
        let mut finish = || -> Result<()> {
            saved.pid = pid;
            saved.start_time =
                procfs::stat(&self.proc_root, pid)
                    .map(|x| x.0)
                    .ok_or_else(|| Error::Sys {
                        operation: "reading init start time",
                        source: std::io::Error::from_raw_os_error(libc::ESRCH),
                    })?;
            locked.save(saved)?;
            if let Some(p) = &opts.pid_file {
                write_pid_file(p, pid)?;
            }
            crate::timeline::mark("state written");
            Ok(())
        };
        if let Err(e) = finish() {
            super::kill_child(pid);
            if let Some(cg) = &saved.cgroups {
                let _ = cg.destroy();
            }
            return Err(e);
        }
        Ok(pid)
    }

    /// The cgroups a container of `linux` gets, or `None` when an unprivileged
    /// caller asks for no limits and cannot make any (it stays in the caller's).
    fn container_cgroups(
        &self,
        id: &str,
        linux: Option<&oci_spec::runtime::Linux>,
    ) -> Result<Option<Cgroups>> {
        let path = linux.and_then(|l| l.cgroups_path().as_deref());
        let resources = linux.and_then(|l| l.resources().as_ref());
        let layout = crate::cgroups::detect(&self.cgroup_roots.cgroupfs)?;
        let cg = Cgroups::new(&self.cgroup_roots, layout, path, id)?;
        if nix::unistd::geteuid().is_root() || cg.writable() {
            return Ok(Some(cg));
        }
        if crate::cgroups::asks_for_limits(resources) {
            return Err(Error::CgroupUnsupported {
                controller: "cgroups",
                reason: "the config sets limits, but an unprivileged caller has no cgroup delegated to it",
            });
        }
        Ok(None)
    }

    /// `create` then `start`; returns the init's host pid.
    pub fn run(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<(i32, Vec<Error>)> {
        validate_id(id)?;
        self.run_bundle(id, Bundle::load(bundle)?, opts)
    }

    /// [`Runtime::run`] of a bundle the caller has already loaded.
    pub fn run_bundle(
        &self,
        id: &str,
        bundle: Bundle,
        opts: &CreateOptions,
    ) -> Result<(i32, Vec<Error>)> {
        let pid = self.create_bundle(id, bundle, opts)?;
        match self.start(id) {
            Ok(w) => Ok((pid, w)),
            Err(e) => {
                let _ = self.delete(id, true);
                Err(e)
            }
        }
    }
}
