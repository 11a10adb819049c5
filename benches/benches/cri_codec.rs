//! Encoding and decoding a `ListContainersResponse` of 10,000 containers with
//! labels and annotations: the largest message a busy node's kubelet asks for on
//! every relist.

use std::collections::HashMap;

use cri_api::v1::{
    Container, ContainerMetadata, ContainerState, ImageSpec, ListContainersResponse,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

fn response(n: usize) -> ListContainersResponse {
    let containers = (0..n)
        .map(|i| Container {
            id: format!("{i:064x}"),
            pod_sandbox_id: format!("{:064x}", i / 4),
            metadata: Some(ContainerMetadata {
                name: format!("container-{i}"),
                attempt: (i % 3) as u32,
            }),
            image: Some(ImageSpec {
                image: "docker.io/library/busybox:latest".into(),
                ..Default::default()
            }),
            image_ref: format!("sha256:{:064x}", i % 50),
            state: ContainerState::ContainerRunning as i32,
            created_at: 1_700_000_000_000_000_000 + i as i64,
            labels: HashMap::from([
                (
                    "io.kubernetes.pod.name".to_string(),
                    format!("pod-{}", i / 4),
                ),
                (
                    "io.kubernetes.pod.namespace".to_string(),
                    "default".to_string(),
                ),
                (
                    "io.kubernetes.container.name".to_string(),
                    format!("container-{i}"),
                ),
                ("app".to_string(), format!("app-{}", i % 20)),
            ]),
            annotations: HashMap::from([
                (
                    "io.kubernetes.container.hash".to_string(),
                    format!("{:08x}", i * 7919),
                ),
                (
                    "io.kubernetes.container.restartCount".to_string(),
                    "0".to_string(),
                ),
                (
                    "io.kubernetes.container.terminationMessagePath".to_string(),
                    "/dev/termination-log".to_string(),
                ),
            ]),
            image_id: format!("sha256:{:064x}", i % 50),
        })
        .collect();
    ListContainersResponse { containers }
}

fn codec(c: &mut Criterion) {
    let msg = response(10_000);
    let bytes = msg.encode_to_vec();
    let mut group = c.benchmark_group("list_containers_10k");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| {
        let mut buf = Vec::with_capacity(bytes.len());
        b.iter(|| {
            buf.clear();
            msg.encode(&mut buf).expect("buffer has capacity");
            std::hint::black_box(&buf);
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let decoded = ListContainersResponse::decode(bytes.as_slice()).expect("valid message");
            std::hint::black_box(decoded);
        })
    });
    group.finish();
    eprintln!("encoded size: {} bytes", bytes.len());
}

criterion_group!(benches, codec);
criterion_main!(benches);
