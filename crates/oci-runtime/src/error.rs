//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while loading, creating or driving a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `config.json` could not be read.
    #[error("reading {path}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `config.json` is not valid JSON or does not match the runtime spec.
    #[error("parsing {path}: field `{field}`")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// Dotted path of the offending field (`.` for the document).
        field: String,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A field of the configuration holds a value this runtime refuses.
    #[error("invalid config: {field}: {reason}")]
    InvalidConfig {
        /// Dotted path of the offending field, e.g. `linux.namespaces[2].path`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A container's monitor failed, or gave no answer.
    #[error("monitor: {reason}")]
    Monitor {
        /// What went wrong.
        reason: String,
    },
    /// An image config (or the overrides given with it) cannot make a process.
    #[error("image config: {what}: {reason}")]
    ImageConfig {
        /// The field or value at fault, e.g. `User "app"`.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A container id that is empty, too long, or holds `/`, `..` or control characters.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId {
        /// The rejected id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// A container with this id already exists under the state root.
    #[error("container {id} already exists")]
    Exists {
        /// The id.
        id: String,
    },
    /// No container with this id exists under the state root.
    #[error("container {id} does not exist")]
    NotFound {
        /// The id.
        id: String,
    },
    /// The container's init has exited, so it cannot be signalled. The text
    /// has runc's "container not running", which containerd's shim and CRI-O
    /// match to treat a kill of an exited container as done.
    #[error("cannot {operation} {id}: container not running")]
    NotRunning {
        /// The id.
        id: String,
        /// The refused operation.
        operation: &'static str,
    },
    /// The container is not in a state that allows the operation.
    #[error("container {id} is {status}: cannot {operation}")]
    WrongState {
        /// The id.
        id: String,
        /// Its current status.
        status: String,
        /// The refused operation.
        operation: &'static str,
    },
    /// A filesystem or system call on a named path failed.
    #[error("{operation} {path}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path (or fd description) it was done on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A system call not tied to a path failed.
    #[error("{operation}")]
    Sys {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The container's init process reported a failed setup step.
    #[error("container init: {step}{}", detail.as_ref().map(|d| format!(" {d}")).unwrap_or_default())]
    Init {
        /// The step that failed, e.g. `mount` or `setrlimit`.
        step: String,
        /// The path, rlimit or field the step worked on, when known.
        detail: Option<String>,
        /// The errno it failed with.
        #[source]
        source: io::Error,
    },
    /// A hook failed, timed out or could not be run.
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        /// Which hook list (`prestart`, `poststop`, …).
        kind: &'static str,
        /// The hook's executable.
        path: PathBuf,
        /// What happened.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<io::Error>,
    },
    /// A state file could not be (de)serialised.
    #[error("state of container {id}")]
    State {
        /// The id.
        id: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The operation would let a container see this process while it is a copy of
    /// a runtime binary the container could overwrite (CVE-2019-5736).
    #[error(
        "{operation}: the runtime binary is writable and the container would see this process; \
         call oci_runtime::protect_exe at start (CVE-2019-5736)"
    )]
    UnprotectedExe {
        /// What was refused.
        operation: &'static str,
    },
    /// A cgroup file refused a value (or could not be opened).
    #[error("writing {value:?} to {path}")]
    CgroupWrite {
        /// The cgroup file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A cgroup controller the operation needs is missing on this host.
    #[error("cgroup controller {controller}: {reason}")]
    CgroupUnsupported {
        /// The controller (`freezer`, `hugetlb`, …).
        controller: &'static str,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The state JSON for container-side hooks outgrew the buffer reserved for it.
    #[error("state JSON of {len} bytes for container hooks exceeds the {capacity} bytes reserved")]
    StateTooLarge {
        /// Its length.
        len: usize,
        /// What was reserved.
        capacity: usize,
    },
    /// An unknown signal name or number.
    #[error("unknown signal {0:?}")]
    Signal(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Helper to build [`Error::Io`].
pub(crate) fn io_err(
    operation: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        operation,
        path,
        source,
    }
}

/// Helper to build [`Error::InvalidConfig`].
pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}
