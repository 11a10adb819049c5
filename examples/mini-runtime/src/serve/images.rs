//! ImageService over image-store: list, status, pull (the store's own
//! pull, with the request's credentials), remove and filesystem usage.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use cri_api::v1::{
    FilesystemIdentifier, FilesystemUsage, Image, ImageFsInfoRequest, ImageFsInfoResponse,
    ImageSpec, ImageStatusRequest, ImageStatusResponse, Int64Value, ListImagesRequest,
    ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, StreamImagesRequest, StreamImagesResponse, UInt64Value,
};
use cri_api::{BoxStream, Request, Response, Status};
use image_store::registry::{Client, HostConfig, RegistryConfig};
use image_store::{PullOptions, Reference, Store};

use super::Logger;
use super::status::{from_store, invalid};

/// The image side of the server.
#[derive(Debug, Clone)]
pub(crate) struct Images {
    store: Store,
    registry: Arc<RegistryConfig>,
    /// One client for pulls without credentials in the request (it keeps
    /// tokens and connections).
    client: Arc<Client>,
    log: Logger,
}

impl Images {
    pub(crate) fn new(store: Store, registry: RegistryConfig, log: Logger) -> Self {
        Self {
            store,
            client: Arc::new(Client::new(registry.clone())),
            registry: Arc::new(registry),
            log,
        }
    }

    /// Runs blocking store work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Status::internal(format!("store task failed: {e}")))?
    }
}

/// The CRI view of one stored image (several names may share one id).
fn cri_images(store: &Store) -> Result<Vec<Image>, Status> {
    let mut by_id: Vec<Image> = Vec::new();
    for img in store.images().map_err(from_store)? {
        let id = img.config.digest_str.clone();
        let (repo_tag, repo_digest) = names_of(&img.name, &img.manifest.digest_str);
        let pos = by_id.iter().position(|i| i.id == id);
        let entry = match pos {
            Some(p) => &mut by_id[p],
            None => {
                let size = img.layers.iter().map(|l| l.blob.size).sum::<u64>()
                    + img.config.size
                    + img.manifest.size;
                let (uid, username) = user_of(store, &img);
                by_id.push(Image {
                    id: id.clone(),
                    size,
                    uid,
                    username,
                    spec: Some(ImageSpec {
                        image: id.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                let last = by_id.len() - 1;
                &mut by_id[last]
            }
        };
        if let Some(t) = repo_tag
            && !entry.repo_tags.contains(&t)
        {
            entry.repo_tags.push(t);
        }
        if !entry.repo_digests.contains(&repo_digest) {
            entry.repo_digests.push(repo_digest);
        }
    }
    Ok(by_id)
}

/// `docker.io/library/busybox:1.36` → (the tag form, `docker.io/library/busybox@sha256:…`).
fn names_of(name: &str, manifest_digest: &str) -> (Option<String>, String) {
    let no_digest = name.split('@').next().unwrap_or(name);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let (repo, tagged) = match no_digest[last_slash..].rfind(':') {
        Some(i) => (&no_digest[..last_slash + i], true),
        None => (no_digest, false),
    };
    (
        tagged.then(|| no_digest.to_string()),
        format!("{repo}@{manifest_digest}"),
    )
}

/// The image config's user: a numeric uid, or a name.
fn user_of(store: &Store, img: &image_store::Image) -> (Option<Int64Value>, String) {
    let user = store
        .config(img)
        .ok()
        .and_then(|c| c.config().as_ref().and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let user = user.split(':').next().unwrap_or("").to_string();
    match user.parse::<i64>() {
        Ok(uid) => (Some(Int64Value { value: uid }), String::new()),
        Err(_) if user.is_empty() => (Some(Int64Value { value: 0 }), String::new()),
        Err(_) => (None, user),
    }
}

fn image_key(spec: Option<&ImageSpec>, field: &str) -> Result<String, Status> {
    let key = spec.map(|s| s.image.trim().to_string()).unwrap_or_default();
    if key.is_empty() {
        return Err(invalid(field, "no image given"));
    }
    Ok(key)
}

/// The CRI image matching `key` (name, id or repo digest), if any.
fn find(store: &Store, key: &str) -> Result<Option<Image>, Status> {
    let Some(found) = store.find(key).map_err(from_store)? else {
        return Ok(None);
    };
    let id = found.config.digest_str;
    Ok(cri_images(store)?.into_iter().find(|i| i.id == id))
}

/// Registry settings with the request's credentials for `host`.
fn with_auth(
    base: &RegistryConfig,
    host: &str,
    auth: &cri_api::v1::AuthConfig,
) -> Result<RegistryConfig, Status> {
    let mut cfg = base.clone();
    let mut h: HostConfig = cfg.host(host);
    if !auth.registry_token.is_empty() {
        return Err(invalid(
            "auth.registry_token",
            "a pre-issued registry token is not supported; give username and password, auth or identity_token",
        ));
    }
    if !auth.identity_token.is_empty() {
        h.identity_token = Some(auth.identity_token.clone());
    } else if !auth.username.is_empty() {
        h.username = Some(auth.username.clone());
        h.password = Some(auth.password.clone());
    } else if !auth.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|_| invalid("auth.auth", "not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| invalid("auth.auth", "not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| invalid("auth.auth", "not user:password once decoded"))?;
        h.username = Some(u.to_string());
        h.password = Some(p.to_string());
    } else {
        return Ok(cfg);
    }
    cfg.registries.insert(host.to_string(), h);
    Ok(cfg)
}

#[cri_api::async_trait]
impl cri_api::v1::ImageService for Images {
    async fn list_images(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let filter = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let images = self
            .blocking(move |store| match filter {
                Some(key) => Ok(find(store, &key)?.into_iter().collect()),
                None => cri_images(store),
            })
            .await?;
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn stream_images(
        &self,
        req: Request<StreamImagesRequest>,
    ) -> Result<Response<BoxStream<StreamImagesResponse>>, Status> {
        let filter = req.into_inner().filter;
        let listed = self
            .list_images(Request::new(ListImagesRequest { filter }))
            .await?
            .into_inner()
            .images;
        Ok(Response::new(super::status::in_messages(
            listed,
            |images| StreamImagesResponse { images },
        )))
    }

    async fn image_status(
        &self,
        req: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let key = image_key(req.image.as_ref(), "image")?;
        let verbose = req.verbose;
        let (image, info) = self
            .blocking(move |store| {
                let image = find(store, &key)?;
                let mut info = HashMap::new();
                if verbose && let Some(img) = store.find(&key).map_err(from_store)? {
                    let config = store
                        .read_blob(&img.config.digest().map_err(from_store)?)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .unwrap_or_default();
                    info.insert(
                        "info".to_string(),
                        serde_json::json!({
                            "name": img.name,
                            "manifest": img.manifest.digest_str,
                            "layers": img.layers.iter().map(|l| &l.blob.digest_str).collect::<Vec<_>>(),
                            "imageSpec": config,
                        })
                        .to_string(),
                    );
                }
                Ok((image, info))
            })
            .await?;
        Ok(Response::new(ImageStatusResponse { image, info }))
    }

    async fn pull_image(
        &self,
        req: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = image_key(req.image.as_ref(), "image")?;
        let reference = Reference::parse(&name).map_err(from_store)?;
        let client = match &req.auth {
            Some(auth) => {
                let cfg = with_auth(&self.registry, &reference.registry, auth)?;
                Arc::new(Client::new(cfg))
            }
            None => self.client.clone(),
        };
        self.log
            .log("info", &format!("pulling {}", reference.name()));
        let log = self.log.clone();
        let id = self
            .blocking(move |store| {
                let pulled = store
                    .pull(
                        &client,
                        &name,
                        &PullOptions::default(),
                        &image_store::NoProgress,
                    )
                    .map_err(from_store)?;
                let img = store.image(&pulled.name).map_err(from_store)?;
                log.log(
                    "info",
                    &format!("pulled {} as {}", pulled.name, img.config.digest_str),
                );
                Ok(img.config.digest_str)
            })
            .await?;
        Ok(Response::new(PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        req: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let key = image_key(req.into_inner().image.as_ref(), "image")?;
        self.blocking(move |store| {
            // Every name of the image goes, as containerd does; an absent
            // image is not an error.
            let Some(found) = store.find(&key).map_err(from_store)? else {
                return Ok(());
            };
            // A container's rootfs (or image volume) holds a lease on it.
            if let Some(l) = store
                .leases()
                .map_err(from_store)?
                .into_iter()
                .find(|l| l.blobs.contains(&found.manifest.digest_str))
            {
                return Err(Status::failed_precondition(format!(
                    "image {key} is in use by a container (its rootfs at {}); remove the container first",
                    l.target.map_or_else(|| l.id.clone(), |t| t.display().to_string())
                )));
            }
            for img in store.images().map_err(from_store)? {
                if img.config.digest_str == found.config.digest_str {
                    match store.remove(&img.name) {
                        Ok(()) | Err(image_store::Error::ImageNotFound { .. }) => {}
                        Err(e) => return Err(from_store(e)),
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let (root, (bytes, inodes)) = self
            .blocking(|store| {
                Ok((
                    store.root().display().to_string(),
                    store.usage().map_err(from_store)?,
                ))
            })
            .await?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let usage = FilesystemUsage {
            timestamp,
            fs_id: Some(FilesystemIdentifier { mountpoint: root }),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        };
        // Containers write into their overlay upper dirs, which live in
        // the store too: the same filesystem.
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![usage.clone()],
            container_filesystems: vec![usage],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_tags_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            names_of("docker.io/library/busybox:1.36", &d),
            (
                Some("docker.io/library/busybox:1.36".into()),
                format!("docker.io/library/busybox@{d}")
            )
        );
        assert_eq!(
            names_of(&format!("localhost:5000/a/b@{d}"), &d),
            (None, format!("localhost:5000/a/b@{d}"))
        );
    }
}
