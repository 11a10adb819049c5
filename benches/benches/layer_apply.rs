//! The layer applier on a synthetic layer: 3,000 entries, about 24 MB,
//! as plain tar, gzip and zstd, applied into a fresh directory each time.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use image_store::{ApplyOptions, apply};

fn layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    // Text-like content so compression ratios resemble real layers.
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {i} of some file content\n").into_bytes())
        .collect();
    for d in 0..30 {
        add(&format!("usr/share/d{d}/"), tar::EntryType::Directory, b"");
        for f in 0..100 {
            let n = (d * 100 + f) % 97;
            let size = if n == 0 { 1_000_000 } else { 1 + n * 80 };
            add(
                &format!("usr/share/d{d}/f{f}.txt"),
                tar::EntryType::Regular,
                &text[..size.min(text.len())],
            );
        }
    }
    b.into_inner().unwrap()
}

fn bench(c: &mut Criterion) {
    let tar = layer();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Bytes(tar.len() as u64));
    g.sample_size(10);
    for (name, data) in [("tar", &tar), ("tar+gzip", &gz), ("tar+zstd", &zst)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    tempfile::tempdir_in("/dev/shm")
                        .or_else(|_| tempfile::tempdir())
                        .unwrap()
                },
                |dir| {
                    black_box(apply(dir.path(), &data[..], &ApplyOptions::default()).unwrap());
                    dir
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
