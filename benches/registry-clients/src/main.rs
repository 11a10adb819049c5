//! Fetches every blob of an image from a registry with two HTTP stacks, in
//! alternation, and prints the wall time of each fetch: image-store's own
//! client (ureq, blocking, a thread per layer) and the `oci-client` crate
//! (reqwest on tokio, a task per layer). Bytes go to a sink; both read every
//! byte of every layer, in parallel across layers.
//!
//!     cargo run --release -- 127.0.0.1:5000/bench/img:1 [runs]

use std::io::Read;
use std::time::Instant;

use image_store::Reference;
use image_store::registry::{Client, RegistryConfig};

fn ours(reference: &Reference, layers: &[(String, u64)]) -> u64 {
    let client = Client::new(RegistryConfig::default());
    std::thread::scope(|s| {
        let hs: Vec<_> = layers
            .iter()
            .map(|(d, size)| {
                let client = &client;
                s.spawn(move || {
                    let digest = image_store::Digest::parse(d).unwrap();
                    let mut r = client.fetch_blob(reference, &digest, *size).unwrap();
                    let mut buf = vec![0u8; 1 << 20];
                    let mut n = 0u64;
                    loop {
                        let k = r.read(&mut buf).unwrap();
                        if k == 0 {
                            break n;
                        }
                        n += k as u64;
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

async fn theirs(reference: &str, layers: &[(String, u64)]) -> u64 {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::secrets::RegistryAuth;
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let r: oci_client::Reference = reference.parse().unwrap();
    client
        .auth(
            &r,
            &RegistryAuth::Anonymous,
            oci_client::RegistryOperation::Pull,
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (d, size) in layers {
        let client = client.clone();
        let r = r.clone();
        let desc = oci_client::manifest::OciDescriptor {
            digest: d.clone(),
            size: *size as i64,
            ..Default::default()
        };
        tasks.push(tokio::spawn(async move {
            let mut sink = Counter(0);
            client.pull_blob(&r, &desc, &mut sink).await.unwrap();
            sink.0
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

struct Counter(u64);

impl tokio::io::AsyncWrite for Counter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0 += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = &args[1];
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let reference = Reference::parse(name).unwrap();
    let client = Client::new(RegistryConfig::default());
    let (bytes, _, _) = client.fetch_manifest(&reference).unwrap();
    let manifest: serde_json_like::Manifest = serde_json_like::parse(&bytes);
    let layers = manifest.layers;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let n1 = ours(&reference, &layers);
        a.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n2 = rt.block_on(theirs(name, &layers));
        b.push(t.elapsed().as_secs_f64());
        assert_eq!(n1, n2);
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let total: u64 = layers.iter().map(|l| l.1).sum();
    println!(
        "{} layers, {:.0} MB: image-store's client {:.3} s ({:.0} MB/s), oci-client {:.3} s ({:.0} MB/s), medians of {runs}",
        layers.len(),
        total as f64 / 1e6,
        a[runs / 2],
        total as f64 / 1e6 / a[runs / 2],
        b[runs / 2],
        total as f64 / 1e6 / b[runs / 2],
    );
}

/// Just the layer digests and sizes of a manifest, without a JSON crate of
/// our own here (oci-client's types would do too).
mod serde_json_like {
    pub struct Manifest {
        pub layers: Vec<(String, u64)>,
    }
    pub fn parse(bytes: &[u8]) -> Manifest {
        let m: oci_client::manifest::OciImageManifest = serde_json::from_slice(bytes).unwrap();
        Manifest {
            layers: m
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size as u64))
                .collect(),
        }
    }
}
