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
    fn bare_tags() {
        assert!(is_bare_tag("latest"));
        assert!(is_bare_tag("v1.2"));
        assert!(!is_bare_tag("docker.io/library/busybox:latest"));
        assert!(!is_bare_tag("a/b"));
    }
}
