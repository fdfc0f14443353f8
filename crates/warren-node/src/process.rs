//! What a process publishes about itself beside its work, for `warren
//! doctor` and Prometheus: its build and role, and the limits it runs
//! under (which differ from the shell's under systemd or Kubernetes).

use warren_core::config::WarrenConfig;
use warren_core::metrics as names;

pub(crate) fn publish_process_facts(config: &WarrenConfig) {
    let role = format!("{:?}", config.role).to_lowercase();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "role" => role).set(1.0);
    if let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        metrics::gauge!(names::PROCESS_OPEN_FILES_LIMIT).set(soft as f64);
    }
    if let Some(limit) = cgroup_memory_limit() {
        metrics::gauge!(names::PROCESS_MEMORY_LIMIT_BYTES).set(limit as f64);
    }
}

/// `memory.max` of the process's cgroup (v2); `None` when it reads `max`
/// or the machine has no cgroup v2.
fn cgroup_memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
    let limit = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok()?;
    limit.trim().parse().ok()
}
