//! The event loop asks the scheduler for short time slices (Linux 6.12+ EEVDF: `sched_setattr` with
//! `sched_runtime` on a normal, non-real-time policy). Its CPU share is unchanged (that is the nice level's); what
//! changes is that a loop woken by a timer or a packet gets an earlier deadline than a task with the default
//! 3 ms slice, so it runs at once instead of at the next tick (4 ms at `HZ=250`).
//!
//! Measured on the many-clients row of `bench/io_drivers.sh` (BENCHMARKS.md, "Coalescing quiet clients"): with
//! io_uring's coalescing windows and the benchmark's clients on the same two cores, a third of the windows ended
//! at the next tick rather than after their 250 µs, which showed in p50 and p99. Best effort: an older kernel
//! ignores the field or refuses the call, and the loop runs as before.

use std::io;

/// Asked of the scheduler unless `MQTT_BROKER_SLICE_US` says otherwise (0: do not ask).
const SLICE_US: u64 = 100;
pub const SLICE_ENV: &str = "MQTT_BROKER_SLICE_US";

/// `struct sched_attr` (include/uapi/linux/sched/types.h), the version with utilization clamps.
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Ask for short slices for the calling thread (the loop's); logs what happened.
pub(super) fn request_short_slices() {
    let slice_us = match std::env::var(SLICE_ENV) {
        Ok(v) => match v.parse::<u64>() {
            Ok(us) => us,
            Err(_) => {
                log::warn!("{SLICE_ENV}={v} is not a number of microseconds; asking for {SLICE_US}");
                SLICE_US
            }
        },
        Err(_) => SLICE_US,
    };
    if slice_us == 0 {
        return;
    }
    match set_slice(slice_us * 1_000) {
        Ok(()) => log::debug!("event loop: scheduler slices of {slice_us} µs"),
        Err(e) => log::debug!("event loop: scheduler slices left as they are ({e})"),
    }
}

fn set_slice(nanos: u64) -> io::Result<()> {
    // SAFETY: getpriority reads the calling process's nice level; errno is not needed (-1 is a valid level and
    // only passed back unchanged).
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice,
        priority: 0,
        runtime: nanos,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: `attr` is a valid, fully initialised sched_attr whose size field is its own size; pid 0 is the
    // calling thread.
    let result = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice the scheduler reports for the calling thread, where the kernel shows it.
    fn own_slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    /// Custom slices for normal tasks came with Linux 6.12; earlier kernels accept the call and keep their own.
    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        let (m, n) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (m, n) >= (major, minor)
    }

    #[test]
    fn the_loop_thread_gets_the_slice_it_asks_for() {
        // A thread of its own: the test harness's other threads keep theirs.
        std::thread::spawn(|| {
            let Some(before) = own_slice() else {
                eprintln!("this kernel does not report se.slice; nothing to check");
                return;
            };
            set_slice(SLICE_US * 1_000).expect("sched_setattr");
            let after = own_slice().expect("se.slice");
            if kernel_at_least(6, 12) {
                assert_eq!(
                    after,
                    SLICE_US * 1_000,
                    "asked for {SLICE_US} µs, had {before} ns before"
                );
            }
        })
        .join()
        .unwrap();
    }
}
