//! What a CNI plugin prints: results, error objects and network config
//! lists. No panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = cni::result::parse_result(data) {
        let _ = r.pod_ips();
    }
    let _ = cni::result::parse_error(data);
    let _ = cni::config::parse_list(data, Path::new("10-x.conflist"));
    let _ = cni::config::parse_conf(data, Path::new("10-x.conf"));
});
