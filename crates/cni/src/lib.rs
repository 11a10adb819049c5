#![doc = include_str!("../README.md")]
//!
//! The Container Network Interface as a runtime uses it: pod networks set
//! up by executing CNI plugins (the reference plugins: bridge, host-local,
//! loopback, portmap, …) per the [CNI spec], as containerd and CRI-O do.
//!
//! - [`config`]: network config lists (`*.conflist`) and single plugin
//!   configs (`*.conf`, `*.json`) read from a conf dir, validated, in the
//!   order runtimes pick them (lexical; the first is the default network).
//! - [`Cni`]: ADD, CHECK and DEL of an attachment over a whole list,
//!   plugins chained through `prevResult`, capability args (`portMappings`)
//!   handed to the plugins that declare them, version negotiation with each
//!   plugin (`VERSION`) before use, and the result of every ADD cached on
//!   disk so that DEL works after a restart of the runtime, even when the
//!   conf dir has changed. STATUS and GC need CNI 1.1.0 in the list and in
//!   every plugin; anything older answers [`Error::NotSupported`].
//! - [`result`]: plugin results (0.3.0 to 1.1.0, and 0.1/0.2's `ip4`/`ip6`)
//!   and error replies, parsed without trusting them.
//! - [`netns`]: network namespaces pinned by a bind mount, to be handed to
//!   plugins and joined by a pod's processes.
//!
//! [CNI spec]: https://github.com/containernetworking/cni/blob/main/SPEC.md

pub mod config;
mod error;
mod exec;
pub mod netns;
pub mod result;
mod version;

pub use config::{NetworkConfigList, PluginConfig, load_dir};
pub use error::{Error, Result};
pub use exec::{Attachment, Cached, Cni, VersionInfo};
pub use result::CniResult;
pub use version::Version;
