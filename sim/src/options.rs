//! Everything a run varies, derived from its seed ("swarm testing": each seed picks its own mix of features and
//! fault rates, so that rare combinations get explored).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// Topics of several depths so that `+` and `#` matter.
pub const TOPICS: &[&str] = &["a", "a/b", "a/b/c", "a/c", "b", "b/c", "b/c/d"];
/// Filters the clients subscribe with (shared ones are built from these).
pub const FILTERS: &[&str] = &["a", "a/b", "a/+", "a/#", "+/c", "b/#", "+/+", "#", "b/+/d"];

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub clients: usize,
    /// Share of clients speaking MQTT 5 (the rest 3.1.1).
    pub v5_share: f64,
    pub persistent_share: f64,
    pub qos2: bool,
    pub retained: bool,
    pub shared: bool,
    pub wills: bool,
    pub expiry: bool,
    /// Steps of the fault phase (each step is one event).
    pub steps: usize,
    /// Per-step probabilities of each fault.
    pub cut_rate: f64,
    pub crash_rate: f64,
    pub slow_reader_rate: f64,
    pub time_jump_rate: f64,
    pub garbage_rate: f64,
    /// Maximum network delay of one segment, ms (segments of different connections may overtake each other).
    pub max_delay_ms: u64,
    /// Deliver byte streams in random chunks (down to one byte) rather than whole segments.
    pub chunking: bool,
    /// Probability that a client delays an acknowledgement.
    pub slow_ack_rate: f64,
    /// Broker limits.
    pub receive_maximum: u16,
    pub client_receive_maximum: u16,
}

fn rate(rng: &mut ChaCha8Rng, max: f64) -> f64 {
    if rng.gen_bool(0.5) {
        0.0
    } else {
        rng.gen_range(0.0..max)
    }
}

impl Options {
    pub fn from_seed(seed: u64, rng: &mut ChaCha8Rng) -> Options {
        Options {
            seed,
            clients: rng.gen_range(2..=8),
            v5_share: rng.gen_range(0.0..=1.0),
            persistent_share: rng.gen_range(0.0..=1.0),
            qos2: rng.gen_bool(0.7),
            retained: rng.gen_bool(0.6),
            shared: rng.gen_bool(0.4),
            wills: rng.gen_bool(0.5),
            expiry: rng.gen_bool(0.3),
            steps: rng.gen_range(1_000..4_000),
            cut_rate: rate(rng, 0.02),
            crash_rate: rate(rng, 0.01),
            slow_reader_rate: rate(rng, 0.01),
            time_jump_rate: rate(rng, 0.005),
            garbage_rate: rate(rng, 0.005),
            max_delay_ms: [0, 1, 5, 50][rng.gen_range(0..4)],
            chunking: rng.gen_bool(0.5),
            slow_ack_rate: rate(rng, 0.5),
            receive_maximum: [2, 10, 1024][rng.gen_range(0..3)],
            client_receive_maximum: [1, 3, 20, 65535][rng.gen_range(0..4)],
        }
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} clients={} v5_share={:.2} persistent_share={:.2} qos2={} retained={} shared={} wills={} \
             expiry={} steps={} cut={:.4} crash={:.4} slow_reader={:.4} time_jump={:.4} garbage={:.4} \
             max_delay={}ms chunking={} slow_ack={:.2} receive_max={} client_receive_max={}",
            self.seed,
            self.clients,
            self.v5_share,
            self.persistent_share,
            self.qos2,
            self.retained,
            self.shared,
            self.wills,
            self.expiry,
            self.steps,
            self.cut_rate,
            self.crash_rate,
            self.slow_reader_rate,
            self.time_jump_rate,
            self.garbage_rate,
            self.max_delay_ms,
            self.chunking,
            self.slow_ack_rate,
            self.receive_maximum,
            self.client_receive_maximum
        )
    }
}
