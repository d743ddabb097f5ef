//! The open-file limit bounds how many connections the broker can hold: one descriptor each, plus a few for
//! listeners, storage and the poller. Distributions start processes with a soft limit of 1,024 under a hard limit
//! in the hundreds of thousands; the broker raises its own soft limit to the hard one, as a user holding 50,000
//! connections would otherwise have to find out and configure.

use std::io;

/// The soft and hard open-file limits after raising the soft one as far as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Descriptors the broker needs besides connections: listeners, the poller, the log, storage files, signals.
pub const RESERVED_DESCRIPTORS: u64 = 32;

pub fn raise_to_hard_limit() -> io::Result<OpenFileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(OpenFileLimit {
        before,
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

impl OpenFileLimit {
    /// How many connections the limit leaves room for.
    pub fn connections(&self) -> u64 {
        self.soft.saturating_sub(RESERVED_DESCRIPTORS)
    }
}
