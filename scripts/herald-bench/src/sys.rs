//! What the kernel says about the server and about us: CPU from
//! `/proc/<pid>/stat` (utime + stime, every thread of the process), memory from
//! `/proc/<pid>/status` (VmRSS) and `smaps_rollup` (Pss), the tool's own CPU
//! from `getrusage`, and the open-files limit.

use std::fs;

/// The server's processes: the PID given and, for nginx, its worker children.
#[derive(Debug, Clone)]
pub struct Server {
    pub pids: Vec<i32>,
}

impl Server {
    /// `pid` and its direct children (nginx's workers; herald has none).
    pub fn discover(pid: i32) -> Server {
        let mut pids = vec![pid];
        if let Ok(dir) = fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if child != pid && stat_fields(child).and_then(|f| f.get(1).and_then(|p| p.parse().ok())) == Some(pid) {
                    pids.push(child);
                }
            }
        }
        Server { pids }
    }

    /// Total CPU seconds (user + system) of all the server's processes.
    pub fn cpu_s(&self) -> f64 {
        let tck = clk_tck();
        self.pids
            .iter()
            .filter_map(|&p| stat_fields(p))
            .map(|f| {
                // fields after "(comm)": [0]=state [1]=ppid … [11]=utime [12]=stime
                let u: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
                let s: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
                (u + s) as f64 / tck
            })
            .sum()
    }

    /// Sum of VmRSS over the server's processes, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.pids.iter().map(|&p| status_kib(&format!("/proc/{p}/status"), "VmRSS:")).sum()
    }

    /// Sum of Pss (shared pages split between sharers), KiB.
    pub fn pss_kib(&self) -> u64 {
        self.pids.iter().map(|&p| status_kib(&format!("/proc/{p}/smaps_rollup"), "Pss:")).sum()
    }

    /// Read and write system calls made so far (`syscr`, `syscw` of
    /// `/proc/<pid>/io`, summed): how well the server batches, without tracing it.
    pub fn syscalls(&self) -> (u64, u64) {
        self.pids.iter().fold((0, 0), |(r, w), &p| {
            let text = fs::read_to_string(format!("/proc/{p}/io")).unwrap_or_default();
            let get = |k: &str| {
                text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0)
            };
            (r + get("syscr:"), w + get("syscw:"))
        })
    }

    pub fn alive(&self) -> bool {
        fs::metadata(format!("/proc/{}", self.pids[0])).is_ok()
    }
}

fn clk_tck() -> f64 {
    // SAFETY-free: sysconf is a plain libc call.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

fn status_kib(path: &str, key: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) used by this process so far.
pub fn self_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(s, _)| s).unwrap_or(1024),
    }
}

/// System-wide `TcpExt: ListenOverflows` (connections dropped because a
/// listener's accept queue was full). The delta over a run shows whether a
/// server accepted too slowly; a dropped SYN costs the client a 1 s+ retry.
pub fn listen_overflows() -> u64 {
    let text = fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
