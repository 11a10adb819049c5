//! Image names, normalized the way containerd and Docker normalize them.

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Normalizes an image reference: `busybox` becomes
/// `docker.io/library/busybox:latest`, `user/app` becomes
/// `docker.io/user/app:latest`, `index.docker.io` becomes `docker.io`, and a
/// reference with neither tag nor digest gets `:latest`.
pub fn normalize_name(name: &str) -> Result<String> {
    let bad = |reason| Error::InvalidReference {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 4096 {
        return Err(bad("empty or too long"));
    }
    if name
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad("contains whitespace"));
    }
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (
            r,
            Some(Digest::parse(d).map_err(|_| bad("invalid digest"))?),
        ),
        None => (name, None),
    };
    // A tag is a `:` after the last `/`, so `host:5000/app` has none.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Err(bad("invalid tag"));
    }
    let (domain, path) = match repo.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, path.to_string())
        }
        _ => ("docker.io", repo.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    if !valid_domain(domain) {
        return Err(bad("invalid registry host"));
    }
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if path.is_empty() || !path.split('/').all(valid_component) {
        return Err(bad(
            "repository must be lowercase letters, digits and separators",
        ));
    }
    let mut out = format!("{domain}/{path}");
    match (tag, &digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(&d.to_string());
    }
    Ok(out)
}

/// A normalized image reference split into the parts a registry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host as users write it (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if any; it wins over the tag when both are given.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes `name` as [`normalize_name`] does.
    pub fn parse(name: &str) -> Result<Self> {
        let full = normalize_name(name)?;
        let (rest, digest) = match full.split_once('@') {
            Some((r, d)) => (r.to_string(), Some(Digest::parse(d)?)),
            None => (full.clone(), None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                rest[..last_slash + i].to_string(),
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest.clone(), None),
        };
        let (registry, repository) =
            repo.split_once('/')
                .ok_or_else(|| Error::InvalidReference {
                    name: name.to_string(),
                    reason: "no repository",
                })?;
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The normalized name, as the store lists it.
    pub fn name(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// What to ask the registry's manifest endpoint for: the digest, else the tag.
    pub fn locator(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

/// Whether `s` is only a tag (no repository), as umoci and skopeo write
/// into `org.opencontainers.image.ref.name`.
pub(crate) fn is_bare_tag(s: &str) -> bool {
    !s.contains(['/', ':', '@']) && valid_tag(s)
}

pub(crate) fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ joined by `.`, `_`, `__` or runs of `-`.
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_containerd() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/app", "docker.io/user/app:latest"),
            (
                "index.docker.io/library/alpine:3",
                "docker.io/library/alpine:3",
            ),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
            ("localhost/demo", "localhost/demo:latest"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("my_repo/x-y__z.w", "docker.io/my_repo/x-y__z.w:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_name(input).unwrap(), want, "{input}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize_name(&format!("busybox@{d}")).unwrap(),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            normalize_name(&format!("busybox:1@{d}")).unwrap(),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "Busybox",
            "a b",
            "busybox:",
            "busybox@sha256:xyz",
            "a//b",
            "-a",
            "a/B",
            "host:port/x",
            "x:/y",
        ] {
            assert!(normalize_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn splits_references() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        let d = format!("sha256:{}", "b".repeat(64));
        let r = Reference::parse(&format!("localhost:5000/a/b:t@{d}")).unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.locator(), d);
        assert_eq!(r.name(), format!("localhost:5000/a/b:t@{d}"));
        let r = Reference::parse(&format!("quay.io/x@{d}")).unwrap();
        assert_eq!((r.tag.clone(), r.locator()), (None, d));
    }

    #[test]
    fn bare_tags() {
        assert!(is_bare_tag("latest"));
        assert!(is_bare_tag("v1.2"));
        assert!(!is_bare_tag("docker.io/library/busybox:latest"));
        assert!(!is_bare_tag("a/b"));
    }
}
