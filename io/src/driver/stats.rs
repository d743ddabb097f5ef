//! What the loop did, counted for comparing the two drivers (per message, against the benchmark's count): turns,
//! reads and the bytes they took, and for io_uring the enters, completions, receives and sends. Plain counters,
//! always kept (an increment each, nothing a profile shows); printed to stderr when the driver stops if
//! `MQTT_BROKER_IO_STATS` is set (debug only: nothing reads them otherwise).

/// Set: print the counters when the driver stops.
pub const STATS_ENV: &str = "MQTT_BROKER_IO_STATS";

#[derive(Default, Debug)]
pub struct LoopStats {
    /// Loop turns (one poll or ring wait each).
    pub turns: u64,
    /// Turns that did not wait (input was unread, or io_uring collected first).
    pub zero_waits: u64,
    /// Reads that returned bytes, and the bytes.
    pub reads: u64,
    pub read_bytes: u64,
    /// Connection flushes (epoll: one `writev` loop each).
    pub flushes: u64,
    /// io_uring only: `io_uring_enter`s, completions, receive completions and their bytes, sends issued and the
    /// bytes they carried, waits that held their sends back to collect input first (`Ring::wait`), waits that
    /// let input gather for a coalescing window (`uring::coalesce`).
    pub enters: u64,
    pub cqes: u64,
    pub recv_cqes: u64,
    pub recv_bytes: u64,
    pub sends: u64,
    pub send_bytes: u64,
    pub collect_first: u64,
    pub windows: u64,
}

impl LoopStats {
    /// Print the counters if asked to (`STATS_ENV`).
    pub fn report(&self, driver: &str) {
        if std::env::var_os(STATS_ENV).is_some() {
            eprintln!("io stats ({driver}): {self:?}");
        }
    }
}
