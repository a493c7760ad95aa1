//! The status sampler: one task reads host and process CPU and memory through sysinfo once a
//! second and publishes the latest sample, so watchers and scrapes never touch /proc themselves.

use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the sampler refreshes; CPU use is measured over this interval.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub timestamp_ms: i64,
    /// Host-wide CPU use, 0..100.
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// This process's CPU use; 100 is one full core.
    pub process_cpu_percent: f32,
    pub process_rss_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the system's status: {0}")]
pub struct SamplerError(String);

struct Sampler {
    system: System,
    pid: Pid,
}

impl Sampler {
    fn new() -> Result<Self, SamplerError> {
        let system = System::new().map_err(|e| SamplerError(e.to_string()))?;
        let mut sampler = Self {
            system,
            pid: Pid::from_u32(std::process::id()),
        };
        // CPU use is a difference between two reads: prime the first one.
        sampler.read();
        Ok(sampler)
    }

    fn read(&mut self) -> Sample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let process = self.system.process(self.pid);
        Sample {
            timestamp_ms: crate::now_ms(),
            cpu_percent: self.system.global_cpu_usage(),
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
            process_cpu_percent: process.map_or(0.0, sysinfo::Process::cpu_usage),
            process_rss_bytes: process.map_or(0, sysinfo::Process::memory),
        }
    }
}

/// Starts the sampler; it stops when `shutdown` is cancelled.
pub fn spawn(shutdown: CancellationToken) -> Result<watch::Receiver<Sample>, SamplerError> {
    let mut sampler = Sampler::new()?;
    let (tx, rx) = watch::channel(sampler.read());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    // Reading /proc for one process takes well under a millisecond.
                    if tx.send(sampler.read()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    Ok(rx)
}

/// Facts about the host that do not change while the agent runs.
#[derive(Clone, Debug)]
pub struct HostFacts {
    pub host: String,
    pub os: String,
    pub cpus: u32,
}

impl HostFacts {
    pub fn read() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Self {
            host: System::host_name().unwrap_or_else(|_| "unknown".into()),
            os: System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
            cpus,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_sees_this_process_and_the_host() {
        let mut sampler = Sampler::new().unwrap();
        // Burn a little CPU so the second read has something to measure.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let s = sampler.read();
        assert!(s.memory_total_bytes > 0 && s.memory_used_bytes <= s.memory_total_bytes);
        assert!(
            s.process_rss_bytes > 1024 * 1024,
            "rss {}",
            s.process_rss_bytes
        );
        assert!(
            (0.0..=100.0).contains(&s.cpu_percent),
            "cpu {}",
            s.cpu_percent
        );
        assert!(s.timestamp_ms > 1_600_000_000_000);
    }
}
