use std::path::PathBuf;

/// What went wrong, naming the file, plugin or field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file that cannot be used.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No plugin binary of that type in any bin dir.
    #[error("CNI plugin {kind:?} not found in {}", dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))]
    PluginNotFound {
        /// The plugin type.
        kind: String,
        /// Where it was looked for.
        dirs: Vec<PathBuf>,
    },
    /// The plugin answered with a CNI error.
    #[error("CNI plugin {plugin} {command}: {msg} (code {code}){}", if details.is_empty() { String::new() } else { format!(": {details}") })]
    Plugin {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL, …
        command: &'static str,
        /// The CNI error code.
        code: u64,
        /// Its message.
        msg: String,
        /// Its details.
        details: String,
    },
    /// The plugin failed without a CNI error reply, or did not finish.
    #[error("CNI plugin {plugin} {command}: {reason}")]
    PluginFailed {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL, …
        command: &'static str,
        /// What happened (exit status, stderr, timeout).
        reason: String,
    },
    /// A reply that is not what the spec allows.
    #[error("CNI plugin {plugin} {command}: malformed reply: {reason}")]
    BadReply {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL, VERSION, …
        command: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A plugin does not speak the list's CNI version.
    #[error("CNI plugin {plugin} does not support CNI version {wanted} of network {network} (it supports {})", supported.join(", "))]
    UnsupportedVersion {
        /// The plugin type.
        plugin: String,
        /// The network.
        network: String,
        /// The list's cniVersion.
        wanted: String,
        /// What the plugin supports.
        supported: Vec<String>,
    },
    /// An operation the list's or a plugin's CNI version lacks.
    #[error("{operation} is not supported by network {network}: {reason}")]
    NotSupported {
        /// STATUS, GC, CHECK.
        operation: &'static str,
        /// The network.
        network: String,
        /// Why (the versions involved).
        reason: String,
    },
    /// An argument that cannot be passed to a plugin.
    #[error("{what}: {reason}")]
    Invalid {
        /// The argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// An I/O or system call failure.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(
    operation: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        operation,
        path,
        source,
    }
}
