//! Our `proto/runtime/v1/api.proto` must be wire-identical to upstream
//! `k8s.io/cri-api` at the Kubernetes 1.36 level. The upstream file is reference
//! data beside the repository (`../shared/reference/cri-api-v1.proto`), never
//! shipped; this test compiles it and compares every message, field, enum value,
//! service and method with the descriptor this crate was generated from.

use std::collections::BTreeSet;
use std::path::PathBuf;

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};

fn reference_proto() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/cri-api-v1.proto");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "reference proto {} is missing: CI must check wire identity",
            path.display()
        );
    }
    eprintln!("skipping wire identity: {} not found", path.display());
    None
}

fn ours() -> FileDescriptorProto {
    let set =
        FileDescriptorSet::decode(cri_api::v1::FILE_DESCRIPTOR_SET).expect("our descriptor set");
    assert_eq!(set.file.len(), 1, "our proto is a single file");
    set.file.into_iter().next().unwrap()
}

fn theirs(path: &std::path::Path) -> FileDescriptorProto {
    let dir = path.parent().unwrap();
    let name = path.file_name().unwrap();
    let set = protox::compile([name], [dir]).expect("reference proto compiles");
    set.file
        .into_iter()
        .find(|f| f.package() == "runtime.v1")
        .expect("runtime.v1 file")
}

/// Every fact of a file that is part of the wire contract, one line each.
fn contract(file: &FileDescriptorProto) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    out.insert(format!(
        "package {} syntax {}",
        file.package(),
        file.syntax()
    ));
    let scope = format!(".{}", file.package());
    for m in &file.message_type {
        message(&scope, m, &mut out);
    }
    for e in &file.enum_type {
        enumeration(&scope, e, &mut out);
    }
    for s in &file.service {
        out.insert(format!("service {scope}.{}", s.name()));
        for m in &s.method {
            out.insert(format!(
                "rpc {scope}.{}.{}({}{}) returns ({}{})",
                s.name(),
                m.name(),
                if m.client_streaming() { "stream " } else { "" },
                m.input_type(),
                if m.server_streaming() { "stream " } else { "" },
                m.output_type(),
            ));
        }
    }
    out
}

fn message(scope: &str, m: &DescriptorProto, out: &mut BTreeSet<String>) {
    let name = format!("{scope}.{}", m.name());
    let map_entry = m.options.as_ref().is_some_and(|o| o.map_entry());
    out.insert(format!("message {name} map_entry={map_entry}"));
    for f in &m.field {
        out.insert(format!(
            "field {name}.{} = {} label={:?} type={:?} type_name={} oneof={:?} proto3_optional={} json={} packed={:?} deprecated={}",
            f.name(),
            f.number(),
            f.label(),
            f.r#type(),
            f.type_name(),
            f.oneof_index.map(|i| m.oneof_decl[i as usize].name().to_string()),
            f.proto3_optional(),
            f.json_name(),
            f.options.as_ref().and_then(|o| o.packed),
            f.options.as_ref().is_some_and(|o| o.deprecated()),
        ));
    }
    for o in &m.oneof_decl {
        out.insert(format!("oneof {name}.{}", o.name()));
    }
    for r in &m.reserved_range {
        out.insert(format!("reserved {name} {}..{}", r.start(), r.end()));
    }
    for n in &m.reserved_name {
        out.insert(format!("reserved {name} {n:?}"));
    }
    for nested in &m.nested_type {
        message(&name, nested, out);
    }
    for e in &m.enum_type {
        enumeration(&name, e, out);
    }
}

fn enumeration(scope: &str, e: &EnumDescriptorProto, out: &mut BTreeSet<String>) {
    let name = format!("{scope}.{}", e.name());
    out.insert(format!("enum {name}"));
    for v in &e.value {
        out.insert(format!("value {name}.{} = {}", v.name(), v.number()));
    }
}

fn differences(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    let mut diff: Vec<String> = a
        .difference(b)
        .map(|l| format!("only ours:   {l}"))
        .collect();
    diff.extend(b.difference(a).map(|l| format!("only theirs: {l}")));
    diff
}

#[test]
fn wire_identical_to_upstream() {
    let Some(reference) = reference_proto() else {
        return;
    };
    let ours = contract(&ours());
    let theirs = contract(&theirs(&reference));
    let diff = differences(&ours, &theirs);
    assert!(
        diff.is_empty(),
        "{} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
}

#[test]
fn covers_both_services_and_all_rpcs() {
    let file = ours();
    let names: Vec<_> = file.service.iter().map(|s| s.name().to_string()).collect();
    assert_eq!(names, ["RuntimeService", "ImageService"]);
    let rpcs: usize = file.service.iter().map(|s| s.method.len()).sum();
    assert_eq!(rpcs, 41);
}

/// The comparison itself must notice a change of number, type, label or streaming.
#[test]
fn comparison_detects_changes() {
    let base = ours();
    let reference = contract(&base);

    let mut renumbered = base.clone();
    renumbered.message_type[0].field[0].number = Some(999);
    assert!(!differences(&contract(&renumbered), &reference).is_empty());

    let mut retyped = base.clone();
    retyped.message_type[0].field[0].r#type =
        Some(prost_types::field_descriptor_proto::Type::Bytes as i32);
    assert!(!differences(&contract(&retyped), &reference).is_empty());

    let mut relabelled = base.clone();
    relabelled.message_type[0].field[0].label =
        Some(prost_types::field_descriptor_proto::Label::Repeated as i32);
    assert!(!differences(&contract(&relabelled), &reference).is_empty());

    let mut unstreamed = base.clone();
    for m in &mut unstreamed.service[0].method {
        m.server_streaming = Some(false);
    }
    assert!(!differences(&contract(&unstreamed), &reference).is_empty());

    let mut enum_changed = base;
    enum_changed.enum_type[0].value[0].number = Some(42);
    assert!(!differences(&contract(&enum_changed), &reference).is_empty());
}
