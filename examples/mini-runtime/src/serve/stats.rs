//! Stats and metrics from cgroups: per container (cpu, memory working set,
//! swap, PSI where the kernel has it, the writable layer's usage) and per pod
//! (the sum of its pause process and containers, its processes, and its
//! network interfaces from the pod's netns); metrics under the cAdvisor
//! names of KEP-2371. CPU rates (`usage_nano_cores`) come from the previous
//! sample of the same container.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cri_api::Status;
use cri_api::v1::{
    ContainerAttributes, ContainerMetadata, ContainerMetrics, ContainerStats, ContainerStatsFilter,
    CpuUsage, FilesystemIdentifier, FilesystemUsage, IoUsage, LinuxPodSandboxStats, MemoryUsage,
    Metric, MetricDescriptor, MetricType, NetworkInterfaceUsage, NetworkUsage,
    PodSandboxAttributes, PodSandboxMetrics, PodSandboxStats, PodSandboxStatsFilter, ProcessUsage,
    PsiData, PsiStats, SwapUsage, UInt64Value,
};
use oci_runtime::cgroups::stats::{Psi, Stats};

use super::containers::{Containers, Sample};
use super::pods::{Pods, now_nanos};

fn u64v(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

fn psi(p: &Option<Psi>) -> Option<PsiStats> {
    let p = p.as_ref()?;
    let data = |d: &oci_runtime::cgroups::stats::PsiData| PsiData {
        total: d.total,
        avg10: d.avg10,
        avg60: d.avg60,
        avg300: d.avg300,
    };
    Some(PsiStats {
        some: Some(data(&p.some)),
        full: p.full.as_ref().map(data),
    })
}

/// Bytes and inodes under `dir`, each inode once.
fn usage(dir: &Path) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(md) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if seen.insert((md.dev(), md.ino())) {
            bytes += md.blocks() * 512;
            inodes += 1;
        }
        if md.is_dir()
            && let Ok(entries) = std::fs::read_dir(&d)
        {
            todo.extend(entries.flatten().map(|e| e.path()));
        }
    }
    (bytes, inodes)
}

/// `/proc/<pid>/net/dev`: name, rx bytes, rx errors, tx bytes, tx errors.
fn net_dev(pid: i32) -> Vec<(String, u64, u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() >= 11).then(|| (name.trim().to_string(), f[0], f[2], f[8], f[10]))
        })
        .filter(|(n, ..)| n != "lo")
        .collect()
}

/// The stats side of the server.
#[derive(Debug, Clone)]
pub(crate) struct StatsService {
    ctrs: Containers,
    pods: Pods,
    /// Last CPU sample per id: (time in ns, usage in ns).
    last: Arc<Mutex<HashMap<String, (i64, u64)>>>,
}

impl StatsService {
    pub(crate) fn new(ctrs: Containers, pods: Pods) -> Self {
        Self {
            ctrs,
            pods,
            last: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// CPU usage and the rate since the previous sample of `key`.
    fn cpu(&self, key: &str, now: i64, total: u64, p: Option<PsiStats>) -> CpuUsage {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let rate = last.get(key).and_then(|(t, u)| {
            let dt = u64::try_from(now - t).ok().filter(|d| *d > 0)?;
            Some(((total.saturating_sub(*u)) as u128 * 1_000_000_000 / dt as u128) as u64)
        });
        last.insert(key.to_string(), (now, total));
        CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: u64v(total),
            usage_nano_cores: rate.and_then(u64v),
            psi: p,
        }
    }

    fn memory(now: i64, s: &Stats) -> MemoryUsage {
        let Some(m) = &s.memory else {
            return MemoryUsage {
                timestamp: now,
                ..Default::default()
            };
        };
        let limit = m.usage.limit;
        // No limit reads as a huge number (v1) or u64::MAX: no "available".
        let available =
            (limit > 0 && limit < (1 << 62)).then(|| limit.saturating_sub(m.working_set));
        MemoryUsage {
            timestamp: now,
            working_set_bytes: u64v(m.working_set),
            available_bytes: available.and_then(u64v),
            usage_bytes: u64v(m.usage.usage),
            rss_bytes: u64v(m.rss),
            page_faults: m.stat.get("pgfault").copied().and_then(u64v),
            major_page_faults: m.stat.get("pgmajfault").copied().and_then(u64v),
            psi: s.pressure.as_ref().and_then(|p| psi(&p.memory)),
        }
    }

    fn container(&self, s: &Sample) -> ContainerStats {
        let now = now_nanos();
        let attributes = Some(ContainerAttributes {
            id: s.id.clone(),
            metadata: Some(ContainerMetadata {
                name: s.name.clone(),
                attempt: s.attempt,
            }),
            labels: s.labels.clone(),
            annotations: s.annotations.clone(),
        });
        let writable_layer = s.upper.as_ref().map(|u| {
            let (bytes, inodes) = usage(u);
            FilesystemUsage {
                timestamp: now,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: s.store_root.display().to_string(),
                }),
                used_bytes: u64v(bytes),
                inodes_used: u64v(inodes),
            }
        });
        let Some(st) = &s.stats else {
            return ContainerStats {
                attributes,
                writable_layer,
                ..Default::default()
            };
        };
        let total = st
            .cpu
            .as_ref()
            .and_then(|c| c.usage.as_ref())
            .map_or(0, |u| u.total);
        let pressure = st.pressure.clone().unwrap_or_default();
        ContainerStats {
            attributes,
            cpu: Some(self.cpu(&s.id, now, total, psi(&pressure.cpu))),
            memory: Some(Self::memory(now, st)),
            writable_layer,
            swap: st.memory.as_ref().map(|m| SwapUsage {
                timestamp: now,
                swap_available_bytes: None,
                swap_usage_bytes: u64v(m.swap_usage.unwrap_or(0)),
            }),
            io: Some(IoUsage {
                timestamp: now,
                psi: psi(&pressure.io),
            }),
        }
    }

    /// Stats of one container.
    pub(crate) async fn container_stats(&self, id: &str) -> Result<ContainerStats, Status> {
        let this = self.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            let s = this.ctrs.sample(&id)?;
            Ok(this.container(&s))
        })
        .await
        .map_err(|e| Status::internal(format!("the stats task: {e}")))?
    }

    fn samples(&self, f: &ContainerStatsFilter) -> Vec<Sample> {
        self.ctrs
            .ids()
            .iter()
            .filter(|id| f.id.is_empty() || id.starts_with(&f.id))
            .filter_map(|id| self.ctrs.sample(id).ok())
            .filter(|s| f.pod_sandbox_id.is_empty() || s.pod_id == f.pod_sandbox_id)
            .filter(|s| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| s.labels.get(k) == Some(v))
            })
            .collect()
    }

    /// Stats of the running containers the filter selects.
    pub(crate) async fn list_container_stats(
        &self,
        f: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>, Status> {
        let this = self.clone();
        let f = f.unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            this.samples(&f)
                .iter()
                .filter(|s| s.running)
                .map(|s| this.container(s))
                .collect()
        })
        .await
        .map_err(|e| Status::internal(format!("the stats task: {e}")))
    }

    fn pod(&self, id: &str) -> Result<PodSandboxStats, Status> {
        let info = self.pods.stats_info(id)?;
        let now = now_nanos();
        let samples = self.samples(&ContainerStatsFilter {
            pod_sandbox_id: info.id.clone(),
            ..Default::default()
        });
        let containers: Vec<ContainerStats> = samples
            .iter()
            .filter(|s| s.running)
            .map(|s| self.container(s))
            .collect();
        // The pod: its pause process and its containers together.
        let mut all: Vec<&Stats> = samples.iter().filter_map(|s| s.stats.as_ref()).collect();
        if let Some(p) = &info.pause {
            all.push(p);
        }
        let cpu_total: u64 = all
            .iter()
            .filter_map(|s| s.cpu.as_ref()?.usage.as_ref().map(|u| u.total))
            .sum();
        let sum = |f: &dyn Fn(&oci_runtime::cgroups::stats::MemoryStats) -> u64| -> u64 {
            all.iter().filter_map(|s| s.memory.as_ref()).map(f).sum()
        };
        let memory = MemoryUsage {
            timestamp: now,
            working_set_bytes: u64v(sum(&|m| m.working_set)),
            usage_bytes: u64v(sum(&|m| m.usage.usage)),
            rss_bytes: u64v(sum(&|m| m.rss)),
            page_faults: u64v(sum(&|m| m.stat.get("pgfault").copied().unwrap_or(0))),
            major_page_faults: u64v(sum(&|m| m.stat.get("pgmajfault").copied().unwrap_or(0))),
            ..Default::default()
        };
        let processes: u64 = all
            .iter()
            .filter_map(|s| s.pids.as_ref().map(|p| p.current))
            .sum();
        let network = info.pid.filter(|_| info.own_netns).map(|pid| {
            let ifs: Vec<NetworkInterfaceUsage> = net_dev(pid)
                .into_iter()
                .map(|(name, rx, rxe, tx, txe)| NetworkInterfaceUsage {
                    name,
                    rx_bytes: u64v(rx),
                    rx_errors: u64v(rxe),
                    tx_bytes: u64v(tx),
                    tx_errors: u64v(txe),
                })
                .collect();
            NetworkUsage {
                timestamp: now,
                default_interface: ifs.iter().find(|i| i.name == "eth0").cloned(),
                interfaces: ifs,
            }
        });
        Ok(PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: info.id.clone(),
                metadata: Some(info.metadata.clone()),
                labels: info.labels.clone(),
                annotations: info.annotations.clone(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(self.cpu(&format!("pod-{}", info.id), now, cpu_total, None)),
                memory: Some(memory),
                network,
                process: Some(ProcessUsage {
                    timestamp: now,
                    process_count: u64v(processes),
                }),
                containers,
                io: None,
            }),
            windows: None,
        })
    }

    pub(crate) async fn pod_stats(&self, id: &str) -> Result<PodSandboxStats, Status> {
        let this = self.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || this.pod(&id))
            .await
            .map_err(|e| Status::internal(format!("the stats task: {e}")))?
    }

    /// Stats of the ready pods the filter selects.
    pub(crate) async fn list_pod_stats(
        &self,
        f: Option<PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>, Status> {
        let this = self.clone();
        let f = f.unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            this.pods
                .ready_ids()
                .iter()
                .filter(|id| f.id.is_empty() || id.starts_with(&f.id))
                .filter_map(|id| this.pod(id).ok())
                .filter(|p| {
                    let labels = p
                        .attributes
                        .as_ref()
                        .map(|a| a.labels.clone())
                        .unwrap_or_default();
                    f.label_selector
                        .iter()
                        .all(|(k, v)| labels.get(k) == Some(v))
                })
                .collect()
        })
        .await
        .map_err(|e| Status::internal(format!("the stats task: {e}")))
    }

    /// The metrics this server reports, by name.
    pub(crate) fn descriptors() -> Vec<MetricDescriptor> {
        METRICS
            .iter()
            .map(|(name, help, _, net)| MetricDescriptor {
                name: name.to_string(),
                help: help.to_string(),
                label_keys: if *net {
                    vec![
                        "id".into(),
                        "name".into(),
                        "image".into(),
                        "interface".into(),
                    ]
                } else {
                    vec!["id".into(), "name".into(), "image".into()]
                },
            })
            .collect()
    }

    fn metric(name: &str, now: i64, labels: Vec<String>, value: u64) -> Metric {
        let kind = METRICS
            .iter()
            .find(|m| m.0 == name)
            .map_or(MetricType::Gauge, |m| m.2);
        Metric {
            name: name.to_string(),
            timestamp: now,
            metric_type: kind as i32,
            label_values: labels,
            value: u64v(value),
        }
    }

    fn pod_metrics(&self, id: &str) -> Result<PodSandboxMetrics, Status> {
        let stats = self.pod(id)?;
        let now = now_nanos();
        let mut metrics = Vec::new();
        let pod_name = stats
            .attributes
            .as_ref()
            .and_then(|a| a.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        if let Some(net) = stats.linux.as_ref().and_then(|l| l.network.as_ref()) {
            for i in &net.interfaces {
                let labels = vec![
                    id.to_string(),
                    pod_name.clone(),
                    String::new(),
                    i.name.clone(),
                ];
                for (name, v) in [
                    ("container_network_receive_bytes_total", &i.rx_bytes),
                    ("container_network_receive_errors_total", &i.rx_errors),
                    ("container_network_transmit_bytes_total", &i.tx_bytes),
                    ("container_network_transmit_errors_total", &i.tx_errors),
                ] {
                    metrics.push(Self::metric(
                        name,
                        now,
                        labels.clone(),
                        v.as_ref().map_or(0, |x| x.value),
                    ));
                }
            }
        }
        let mut container_metrics = Vec::new();
        for s in self.samples(&ContainerStatsFilter {
            pod_sandbox_id: id.to_string(),
            ..Default::default()
        }) {
            let Some(st) = &s.stats else { continue };
            let labels = vec![s.id.clone(), s.name.clone(), s.image.clone()];
            let mut m = Vec::new();
            if let Some(u) = st.cpu.as_ref().and_then(|c| c.usage.as_ref()) {
                for (name, ns) in [
                    ("container_cpu_usage_seconds_total", u.total),
                    ("container_cpu_user_seconds_total", u.user),
                    ("container_cpu_system_seconds_total", u.system),
                ] {
                    m.push(Self::metric(name, now, labels.clone(), ns / 1_000_000_000));
                }
            }
            if let Some(mem) = &st.memory {
                for (name, v) in [
                    ("container_memory_usage_bytes", mem.usage.usage),
                    ("container_memory_working_set_bytes", mem.working_set),
                    ("container_memory_rss", mem.rss),
                    ("container_memory_cache", mem.cache),
                    ("container_spec_memory_limit_bytes", mem.usage.limit),
                    (
                        "container_oom_events_total",
                        mem.oom.as_ref().map_or(0, |o| o.oom_kill),
                    ),
                ] {
                    m.push(Self::metric(name, now, labels.clone(), v));
                }
            }
            if let Some(p) = &st.pids {
                m.push(Self::metric(
                    "container_processes",
                    now,
                    labels.clone(),
                    p.current,
                ));
            }
            container_metrics.push(ContainerMetrics {
                container_id: s.id.clone(),
                metrics: m,
            });
        }
        Ok(PodSandboxMetrics {
            pod_sandbox_id: id.to_string(),
            metrics,
            container_metrics,
        })
    }

    pub(crate) async fn list_pod_metrics(&self) -> Result<Vec<PodSandboxMetrics>, Status> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.pods
                .ready_ids()
                .iter()
                .filter_map(|id| this.pod_metrics(id).ok())
                .collect()
        })
        .await
        .map_err(|e| Status::internal(format!("the metrics task: {e}")))
    }
}

/// Name, help, type, whether it is per network interface. Values are
/// integers in the unit the name gives (CPU seconds are whole seconds).
const METRICS: [(&str, &str, MetricType, bool); 14] = [
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        MetricType::Counter,
        false,
    ),
    (
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        MetricType::Counter,
        false,
    ),
    (
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        MetricType::Counter,
        false,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        MetricType::Gauge,
        false,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        MetricType::Gauge,
        false,
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes.",
        MetricType::Gauge,
        false,
    ),
    (
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        MetricType::Gauge,
        false,
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        MetricType::Gauge,
        false,
    ),
    (
        "container_oom_events_total",
        "Count of out of memory events observed for the container.",
        MetricType::Counter,
        false,
    ),
    (
        "container_processes",
        "Number of processes running inside the container.",
        MetricType::Gauge,
        false,
    ),
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
        MetricType::Counter,
        true,
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
        MetricType::Counter,
        true,
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
        MetricType::Counter,
        true,
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
        MetricType::Counter,
        true,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_name_every_metric_once_with_labels() {
        let d = StatsService::descriptors();
        assert_eq!(d.len(), METRICS.len());
        let mut names: Vec<&str> = d.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        let net = d
            .iter()
            .find(|m| m.name == "container_network_receive_bytes_total")
            .unwrap();
        assert!(net.label_keys.contains(&"interface".to_string()));
    }

    #[test]
    fn usage_counts_each_inode_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let (bytes, inodes) = usage(d.path());
        assert_eq!(inodes, 3, "dir, file (twice linked), subdir");
        assert!(bytes >= 10_000);
    }
}
