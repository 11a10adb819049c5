//! The runc-compatible OCI commands: thin glue over `oci_runtime::Runtime`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use oci_runtime::{CreateOptions, Error, ExecOptions, Runtime};

use crate::terminal::{proxy_console, proxy_terminal};

/// Global flags runc's callers (podman, conmon, containerd's shim) pass.
#[derive(Debug, Args)]
pub(crate) struct GlobalOpts {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/mini-runtime")]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,
    /// Use the systemd cgroup driver (not available).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (for `spec`: write a rootless config).
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
}

impl GlobalOpts {
    /// The state root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}

/// The OCI lifecycle commands.
#[derive(Debug, Subcommand)]
pub(crate) enum OciCommand {
    /// Create a container; its process waits until `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start(IdArgs),
    /// Print a container's state as JSON.
    State(IdArgs),
    /// Send a signal to a container's init (or all its processes).
    Kill(KillArgs),
    /// Delete a container.
    Delete(DeleteArgs),
    /// Create and start a container, and wait for it unless detached.
    Run(RunArgs),
    /// Run a new process in a container.
    Exec(ExecArgs),
    /// List containers.
    List {
        /// Output format: table or json.
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List a container's processes.
    Ps {
        /// Output format: table or json.
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Container id.
        id: String,
        /// Arguments for ps(1) (default `-ef`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a running container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// Change a running container's resource limits.
    Update(Box<crate::update_cmd::UpdateArgs>),
    /// Print a container's OOM notifications and resource statistics as JSON lines.
    Events(crate::events_cmd::EventsArgs),
    /// Print the features this runtime implements, as JSON.
    Features,
    /// Write a default config.json into the bundle.
    Spec {
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Include the built-in default seccomp profile (Docker's, for the
        /// spec's capabilities).
        #[arg(long)]
        seccomp: bool,
    },
}

/// A command that takes only a container id.
#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// Container id.
    id: String,
}

#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    /// Container id.
    id: String,
    /// Signal name or number.
    #[arg(default_value = "SIGTERM")]
    signal: String,
    /// Signal every process of the container.
    #[arg(short, long)]
    all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Container id.
    id: String,
    /// Kill a running container first.
    #[arg(short, long)]
    force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Container id.
    id: String,
    /// Bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket receiving the pty master.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one per container.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many fds after stdio to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    /// Return after start instead of waiting.
    #[arg(short, long)]
    detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Container id.
    id: String,
    /// Command and arguments (unless --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// process.json describing the process.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short, long)]
    detach: bool,
    /// Write the process's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket receiving the pty master.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Extra environment, KEY=value.
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// uid[:gid].
    #[arg(short, long)]
    user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// Add a capability.
    #[arg(short, long)]
    cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    no_new_privs: bool,
    /// Pass this many fds after stdio to the process.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
}

/// Logging to `--log` in runc's text or json format (containerd's shim reads the json).
struct Logger {
    file: Option<std::fs::File>,
    json: bool,
    debug: bool,
}

impl Logger {
    fn new(g: &GlobalOpts) -> Logger {
        let file = g.log.as_ref().and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        Logger {
            file,
            json: g.log_format == "json",
            debug: g.debug,
        }
    }

    fn log(&self, level: &str, msg: &str) {
        if level == "debug" && !self.debug {
            return;
        }
        let time = now_rfc3339();
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        } else {
            format!("time={time:?} level={level} msg={msg:?}")
        };
        match &self.file {
            Some(f) => {
                let mut f = f;
                let _ = writeln!(f, "{line}");
            }
            None if level != "error" => eprintln!("{line}"),
            None => {}
        }
    }
}

fn now_rfc3339() -> String {
    // The state module's formatter is private to the library; format seconds here.
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Errors of the command line beyond the library's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Runtime(#[from] Error),
    #[error("systemd cgroup driver is not supported")]
    Systemd,
    #[error("{operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("parsing {path}: field `{field}`")]
    Json {
        path: PathBuf,
        field: String,
        #[source]
        source: serde_json::Error,
    },
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Runs one OCI command; returns the process exit code.
pub(crate) fn run(g: &GlobalOpts, cmd: OciCommand) -> i32 {
    let log = Logger::new(g);
    log.log("debug", &format!("command: {cmd:?}"));
    match dispatch(g, cmd, &log) {
        Ok(code) => code,
        Err(e) => {
            let msg = chain(&e);
            log.log("error", &msg);
            eprintln!("mini-runtime: {msg}");
            1
        }
    }
}

fn warn_all(log: &Logger, warnings: Vec<Error>) {
    for w in warnings {
        log.log("warning", &chain(&w));
    }
}

/// One warning when a container was left in its creator's cgroup (rootless,
/// nothing delegated): it runs, but nothing accounts or limits it on its own.
fn warn_if_no_cgroups(rt: &Runtime, id: &str, log: &Logger) {
    if rt.state(id).is_ok_and(|i| !i.own_cgroups) {
        let msg = format!(
            "container {id} runs in this user's cgroup: no cgroup is delegated to it, \
             so the container has no cgroups of its own"
        );
        log.log("warning", &msg);
    }
}

fn create_opts(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

fn dispatch(g: &GlobalOpts, cmd: OciCommand, log: &Logger) -> Result<i32, CliError> {
    if g.systemd_cgroup {
        return Err(CliError::Systemd);
    }
    // Before anything of a container exists: from here on this process (and every
    // copy of it that becomes a container's init) runs from a binary no container
    // can write. Only where a container could see such a copy, since re-executing
    // costs a process start: exec, and an init joining a populated pid namespace.
    // config.json is read once, here, for this and for the create.
    let bundle = match &cmd {
        OciCommand::Create(a) => Some(oci_runtime::Bundle::load(&a.bundle)?),
        OciCommand::Run(a) => Some(oci_runtime::Bundle::load(&a.create.bundle)?),
        _ => None,
    };
    let protect = match &bundle {
        Some(b) => oci_runtime::needs_protected_exe(&b.spec),
        None => matches!(cmd, OciCommand::Exec(_)),
    };
    if protect {
        oci_runtime::protect_exe(&g.root.join(".exe-lower"))?;
    }
    let rt = Runtime::new(&g.root);
    match cmd {
        OciCommand::Create(a) => {
            let bundle = loaded(bundle)?;
            rt.create_bundle(&a.id, bundle, &create_opts(&a))?;
            warn_if_no_cgroups(&rt, &a.id, log);
        }
        OciCommand::Start(IdArgs { id }) => warn_all(log, rt.start(&id)?),
        OciCommand::State(IdArgs { id }) => {
            let info = rt.state(&id)?;
            println!("{}", pretty(&state_value(&info)));
        }
        OciCommand::Kill(KillArgs { id, signal, all }) => {
            let sig = oci_runtime::parse_signal(&signal)?;
            rt.kill(&id, sig, all)?;
        }
        OciCommand::Delete(DeleteArgs { id, force }) => match rt.delete(&id, force) {
            Ok(w) => warn_all(log, w),
            // runc: deleting a missing container with --force is not an error.
            Err(Error::NotFound { .. }) if force => {}
            Err(e) => return Err(e.into()),
        },
        OciCommand::Run(a) => {
            return run_cmd(&rt, a, loaded(bundle)?, log);
        }
        OciCommand::Exec(a) => return exec_cmd(&rt, a),
        OciCommand::List { format, quiet } => list_cmd(&rt, &format, quiet)?,
        OciCommand::Ps {
            format,
            id,
            ps_args,
        } => ps_cmd(&rt, &format, &id, &ps_args)?,
        OciCommand::Pause { id } => rt.pause(&id)?,
        OciCommand::Resume { id } => rt.resume(&id)?,
        OciCommand::Update(a) => rt.update(&a.id, &crate::update_cmd::resources(&a)?)?,
        OciCommand::Events(a) => crate::events_cmd::run(&rt, &a, |e| warn_all(log, vec![e]))?,
        OciCommand::Features => println!("{}", pretty(&features())),
        OciCommand::Spec { bundle, seccomp } => {
            spec_cmd(&bundle, g.rootless.as_deref() == Some("true"), seccomp)?
        }
    }
    Ok(0)
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The status as runc prints it: the spec's, or `paused` for a frozen container.
fn status_str(info: &oci_runtime::ContainerInfo) -> String {
    if info.paused {
        "paused".to_string()
    } else {
        info.state.status().to_string()
    }
}

fn state_value(info: &oci_runtime::ContainerInfo) -> serde_json::Value {
    let s = &info.state;
    let mut v = serde_json::json!({
        "ociVersion": s.version(),
        "id": s.id(),
        "pid": s.pid().unwrap_or(0),
        "status": status_str(info),
        "bundle": s.bundle(),
        "rootfs": info.rootfs,
        "created": info.created,
        "owner": info.owner,
    });
    if let (Some(a), Some(obj)) = (s.annotations(), v.as_object_mut()) {
        obj.insert("annotations".into(), serde_json::json!(a));
    }
    v
}

/// The bundle `dispatch` loaded for create and run.
fn loaded(b: Option<oci_runtime::Bundle>) -> Result<oci_runtime::Bundle, CliError> {
    b.ok_or_else(|| CliError::Usage("create and run need a bundle".into()))
}

fn run_cmd(
    rt: &Runtime,
    a: RunArgs,
    bundle: oci_runtime::Bundle,
    log: &Logger,
) -> Result<i32, CliError> {
    let id = a.create.id.clone();
    let mut opts = create_opts(&a.create);
    // As runc: a terminal without --console-socket is the caller's own terminal,
    // proxied through a pty this process receives on a private socket.
    let wants_tty = opts.console_socket.is_none()
        && bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
    let console = proxy_console(wants_tty, a.detach, "container", &mut opts.console_socket)?;
    if !a.detach {
        // Before start: a signal that arrives while the container starts is held, not lost.
        oci_runtime::pty::forward_signals();
    }
    let receiver = console.as_ref().map(|c| c.receive());
    let (pid, warnings) = rt.run_bundle(&id, bundle, &opts)?;
    oci_runtime::timeline::mark("started (exec fifo written)");
    warn_if_no_cgroups(rt, &id, log);
    warn_all(log, warnings);
    if a.detach {
        return Ok(0);
    }
    oci_runtime::pty::forward_to(pid, None);
    let proxy = match receiver {
        Some(r) => Some(
            r.join()
                .map_err(|_| CliError::Usage("console receiver panicked".into()))??,
        ),
        None => None,
    };
    if let Some(master) = proxy {
        proxy_terminal(pid, master);
    }
    let code = rt.wait(&id)?;
    oci_runtime::timeline::mark("payload exited and reaped");
    if !a.keep {
        warn_all(log, rt.delete(&id, true)?);
        oci_runtime::timeline::mark("deleted (cgroups and state removed)");
    }
    Ok(code)
}

/// Reads a JSON document from `path` (`-`: standard input); errors name the field.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(drop)
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    read.map_err(|source| CliError::Io {
        operation: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| CliError::Json {
        path: path.to_path_buf(),
        field: e.path().to_string(),
        source: e.into_inner(),
    })
}

fn exec_cmd(rt: &Runtime, a: ExecArgs) -> Result<i32, CliError> {
    let mut p = match &a.process {
        Some(path) => read_json(path)?,
        None => {
            if a.command.is_empty() {
                return Err(CliError::Usage("exec needs a command or --process".into()));
            }
            let mut p = rt.base_process(&a.id)?;
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            p
        }
    };
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(a.env.iter().cloned());
        p.set_env(Some(env));
    }
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse()) else {
            return Err(CliError::Usage(format!("--user {u:?}: expected uid[:gid]")));
        };
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for c in &a.cap {
            let name = if c.to_ascii_uppercase().starts_with("CAP_") {
                c.to_ascii_uppercase()
            } else {
                format!("CAP_{}", c.to_ascii_uppercase())
            };
            let cap: oci_spec::runtime::Capability =
                serde_json::from_value(serde_json::Value::String(name.clone()))
                    .map_err(|_| CliError::Usage(format!("--cap {c:?}: unknown capability")))?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            let (b, e, pm) = (
                add(caps.bounding()),
                add(caps.effective()),
                add(caps.permitted()),
            );
            caps.set_bounding(b);
            caps.set_effective(e);
            caps.set_permitted(pm);
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    let mut opts = ExecOptions {
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
    };
    let wants_tty = opts.console_socket.is_none() && p.terminal().unwrap_or(false);
    let console = proxy_console(wants_tty, a.detach, "process", &mut opts.console_socket)?;
    if !a.detach {
        oci_runtime::pty::forward_signals();
    }
    let receiver = console.as_ref().map(|c| c.receive());
    let pid = rt.exec(&a.id, &p, &opts)?;
    if a.detach {
        return Ok(0);
    }
    oci_runtime::pty::forward_to(pid, None);
    if let Some(r) = receiver {
        let master = r
            .join()
            .map_err(|_| CliError::Usage("console receiver panicked".into()))??;
        proxy_terminal(pid, master);
    }
    Ok(oci_runtime::wait_pid(pid)?)
}

fn list_cmd(rt: &Runtime, format: &str, quiet: bool) -> Result<(), CliError> {
    let all = rt.list()?;
    if quiet {
        for i in &all {
            println!("{}", i.state.id());
        }
    } else if format == "json" {
        let v: Vec<_> = all.iter().map(state_value).collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        println!(
            "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
            "ID", "PID", "STATUS", "BUNDLE", "CREATED"
        );
        for i in &all {
            let s = &i.state;
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                s.id(),
                s.pid().unwrap_or(0),
                status_str(i),
                s.bundle().display(),
                i.created,
                i.owner
            );
        }
    }
    Ok(())
}

fn ps_cmd(rt: &Runtime, format: &str, id: &str, args: &[String]) -> Result<(), CliError> {
    let pids = rt.pids(id)?;
    if format == "json" {
        println!("{}", serde_json::json!(pids));
        return Ok(());
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|source| CliError::Io {
            operation: "running",
            path: "ps".into(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(());
    };
    let col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| CliError::Usage("ps output has no PID column".into()))?;
    println!("{header}");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            println!("{l}");
        }
    }
    Ok(())
}

fn features() -> serde_json::Value {
    let caps = oci_runtime::known_capabilities();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_runtime::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "dev", "diratime", "dirsync", "exec", "lazytime", "loud", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nolazytime", "nomand", "norelatime", "nostrictatime",
            "nosuid", "private", "rbind", "relatime", "ro", "rprivate", "rshared", "rslave", "runbindable",
            "rw", "shared", "silent", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "knownFlags": [
                    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
                ],
                "supportedFlags": [
                    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                    "SECCOMP_FILTER_FLAG_TSYNC"
                ]
            },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {}
    })
}

fn spec_cmd(bundle: &Path, rootless: bool, seccomp: bool) -> Result<(), CliError> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(CliError::Usage(format!(
            "{} exists; remove it first",
            path.display()
        )));
    }
    let mut spec = if rootless {
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        oci_spec::runtime::Spec::rootless(uid, gid)
    } else {
        oci_spec::runtime::Spec::default()
    };
    spec.set_version(oci_runtime::OCI_VERSION.to_string());
    spec.set_hostname(Some("mini-runtime".into()));
    if let Some(mut process) = spec.process().clone() {
        // runc's default since 1.1.2: an inheritable set lets a program the
        // container execs gain its file capabilities (CVE-2022-29162).
        if let Some(mut caps) = process.capabilities().clone() {
            caps.set_inheritable(None);
            process.set_capabilities(Some(caps));
        }
        // As `runc spec`: an interactive shell on a terminal.
        process.set_terminal(Some(true));
        spec.set_process(Some(process));
    }
    if let Some(mut linux) = spec.linux().clone() {
        // runc's default: no device but the ones every container gets.
        let mut deny_all = oci_spec::runtime::LinuxDeviceCgroup::default();
        deny_all.set_allow(false);
        deny_all.set_access(Some("rwm".into()));
        let mut resources = oci_spec::runtime::LinuxResources::default();
        resources.set_devices(Some(vec![deny_all]));
        // Rootless: no cgroup is ours to limit, so none, as `runc spec --rootless`.
        linux.set_resources((!rootless).then_some(resources));
        // As `runc spec`, no profile unless asked; then the one Docker
        // gives a container with these (runc's default) capabilities.
        let caps = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref());
        let bounding = caps
            .and_then(|c| c.bounding().as_ref())
            .into_iter()
            .flatten();
        linux.set_seccomp(seccomp.then(|| {
            oci_runtime::default_seccomp(bounding, oci_spec::runtime::Arch::ScmpArchNative)
        }));
        spec.set_linux(Some(linux));
    }
    let json = serde_json::to_string_pretty(&spec).map_err(|source| CliError::Json {
        path: path.clone(),
        field: ".".into(),
        source,
    })?;
    std::fs::write(&path, json + "\n").map_err(|source| CliError::Io {
        operation: "writing",
        path,
        source,
    })
}
