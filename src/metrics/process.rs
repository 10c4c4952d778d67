//! The standard `process_*` metrics every Prometheus client library exports, so the usual
//! dashboards and alerts work unchanged: CPU seconds, resident and virtual memory, open and
//! maximum file descriptors, start time. Read from `/proc/self` at each scrape (a few small
//! files, off the decision path); on a system without `/proc` nothing is written.
//!
//! It reads `/proc` and writes the families; it keeps no state.

use super::prom::{Collect, Exposition, Kind};

/// The process's own figures, as the exposition writes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started (Unix seconds).
    pub start_time_seconds: Option<f64>,
}

/// Parses `/proc/self/stat` (after the command name, which may hold spaces and parentheses):
/// CPU ticks (utime + stime), start time in ticks after boot, virtual bytes, resident pages.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields from the third (state) on: utime is the 14th, so index 11 here.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some((n(11)? + n(12)?, n(19)?, n(20)?, n(21)?))
}

/// The soft `Max open files` of `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The boot time (`btime`) of `/proc/stat`, in Unix seconds.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Reads the figures now; `None` without `/proc`.
pub fn read() -> Option<Figures> {
    let (ticks, start_ticks, virtual_bytes, resident_pages) =
        parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_boot_time(&s));
    Some(Figures {
        cpu_seconds: ticks as f64 / hz,
        resident_bytes: resident_pages * rustix::param::page_size() as u64,
        virtual_bytes,
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| parse_max_fds(&s)),
        start_time_seconds: boot.map(|b| b as f64 + start_ticks as f64 / hz),
    })
}

/// The running process, as a source of `process_*` metrics.
pub struct Process;

impl Collect for Process {
    fn collect(&self, out: &mut Exposition) {
        let Some(p) = read() else { return };
        out.family(
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
        )
        .sample(&[], p.cpu_seconds);
        out.family(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
        )
        .sample(&[], p.resident_bytes);
        out.family(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
        )
        .sample(&[], p.virtual_bytes);
        out.family(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
        )
        .sample(&[], p.open_fds);
        if let Some(m) = p.max_fds {
            out.family(
                "process_max_fds",
                Kind::Gauge,
                "Maximum number of open file descriptors.",
            )
            .sample(&[], m);
        }
        if let Some(s) = p.start_time_seconds {
            out.family(
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since unix epoch in seconds.",
            )
            .sample(&[], s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse_and_the_process_reads_itself() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((300, 12345, 104_857_600, 2560)));
        let limits = "Limit Soft Limit Hard Limit Units\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1_048_576));
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1796000000\n"),
            Some(1_796_000_000)
        );

        let p = read().expect("/proc on Linux");
        assert!(p.resident_bytes > 1 << 20 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.open_fds >= 3 && p.max_fds.is_some_and(|m| m >= p.open_fds));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = p.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
    }
}
