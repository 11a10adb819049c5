//! What the server keeps of pods and containers in the persistent state
//! dir: one JSON file per object, written atomically and synced, so that a
//! crash or power loss leaves the old record or the new one, never a torn
//! one.

use std::collections::HashMap;
use std::path::Path;

use cri_api::Status;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Logger;

/// Reads every `*.json` record in `dir` (made if missing) by `key`; an
/// unreadable one is skipped with a warning naming it.
pub(crate) fn load<T: DeserializeOwned>(
    dir: &Path,
    what: &str,
    key: impl Fn(&T) -> String,
    log: &Logger,
) -> Result<HashMap<String, T>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let Ok(e) = e else { continue };
        let p = e.path();
        // A record whose write was cut off (see `save`): never renamed in.
        if p.extension().is_some_and(|x| x == "tmp") {
            let _ = std::fs::remove_file(&p);
            continue;
        }
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&p).map(|b| serde_json::from_slice::<T>(&b)) {
            Ok(Ok(r)) => {
                out.insert(key(&r), r);
            }
            _ => log.log(
                "warn",
                &format!("ignoring unreadable {what} record {}", p.display()),
            ),
        }
    }
    Ok(out)
}

/// Writes record `id` of `dir`: temp file, fsync, rename.
pub(crate) fn save<T: Serialize>(dir: &Path, id: &str, what: &str, r: &T) -> Result<(), Status> {
    let path = dir.join(format!("{id}.json"));
    let tmp = dir.join(format!(".{id}.tmp"));
    let bytes = serde_json::to_vec_pretty(r)
        .map_err(|e| Status::internal(format!("encoding a {what} record: {e}")))?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Status::internal(format!("saving the {what} record: {e}")))
}
