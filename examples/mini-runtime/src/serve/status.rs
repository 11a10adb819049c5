//! One mapping from our errors to gRPC status codes, as the CRI and its
//! conformance tests expect them.

use cri_api::Status;

/// An image-store error as the CRI reports it.
pub(crate) fn from_store(e: image_store::Error) -> Status {
    use image_store::Error as E;
    let msg = e.to_string();
    match &e {
        E::ImageNotFound { .. } => Status::not_found(msg),
        E::InvalidReference { .. } | E::InvalidDigest { .. } | E::Config { .. } => {
            Status::invalid_argument(msg)
        }
        E::NoMatchingPlatform { .. } => Status::not_found(msg),
        E::Cancelled { .. } => Status::cancelled(msg),
        E::Registry { reason, .. } if reason.starts_with("404") => Status::not_found(msg),
        E::Registry { reason, .. } if reason.starts_with("401") || reason.contains(" 401 ") => {
            Status::unauthenticated(msg)
        }
        E::Registry { .. } => Status::unavailable(msg),
        E::DigestMismatch { .. } | E::SizeMismatch { .. } => Status::data_loss(msg),
        _ if out_of_space(&e) => Status::resource_exhausted(msg),
        _ => Status::internal(msg),
    }
}

/// Whether an error comes of a full file system or quota (ENOSPC,
/// EDQUOT), which gRPC calls RESOURCE_EXHAUSTED.
fn out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// A failure of this server's own work (`what`), as INTERNAL, or as
/// RESOURCE_EXHAUSTED when the disk is full.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    let msg = format!("{what}: {e}");
    // An io::Error's text ends with its errno.
    if msg.ends_with("(os error 28)") || msg.ends_with("(os error 122)") {
        return Status::resource_exhausted(msg);
    }
    Status::internal(msg)
}

/// A listing as a server stream, in messages of up to 100 items.
pub(crate) fn in_messages<T: Clone, M: Send + 'static>(
    items: Vec<T>,
    message: impl Fn(Vec<T>) -> M,
) -> cri_api::BoxStream<M> {
    let messages: Vec<Result<M, Status>> =
        items.chunks(100).map(|c| Ok(message(c.to_vec()))).collect();
    Box::pin(tokio_stream::iter(messages))
}

/// A request field that is missing or malformed.
pub(crate) fn invalid(field: &str, why: &str) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

/// An error with every cause it carries (an init step's errno, say), as
/// one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}
