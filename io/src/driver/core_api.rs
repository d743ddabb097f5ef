//! What the driver needs of the state machine it runs.

use super::*;

/// The sans-IO state machine the driver runs: the broker in production, a scripted stand-in in the driver's own
/// tests (so the I/O paths can be checked independently of the broker's protocol logic).
pub trait Core {
    fn handle_input(&mut self, now: Time, input: Input<'_>);
    fn poll_output(&mut self) -> Option<Output>;
    fn poll_timeout(&self) -> Option<Time>;
    /// The durable state, for a snapshot.
    fn image(&self) -> Image {
        Image::default()
    }
    /// The durable state frozen for a snapshot written on another thread (see `snapshot`); the broker shares its
    /// retained messages instead of copying them.
    fn frozen_image(&self) -> FrozenImage {
        FrozenImage::from_image(self.image())
    }
    /// Counters, for metrics.
    fn stats(&self) -> Stats {
        Stats::default()
    }
    /// Current sizes, for metrics.
    fn gauges(&self) -> Gauges {
        Gauges::default()
    }
    /// A cluster node's role, leader and applied index for `/health`, and its held-output drops for `/metrics`;
    /// `None` for a single broker.
    fn cluster_health(&self) -> Option<(crate::http::ClusterHealth, u64)> {
        None
    }
    /// The partial packet a connected client holds, for the input budget (see `park`). Cores without clients of
    /// their own report none.
    fn partial_input(&self, conn: ConnectionId) -> PartialInput {
        let _ = conn;
        PartialInput::default()
    }
    /// Output the core holds for `conn`, not handed out yet (it counts against `max_outbuf_bytes` with the
    /// driver's own unsent bytes, see `park`).
    fn unsent_output(&self, conn: ConnectionId) -> usize {
        let _ = conn;
        0
    }
    /// Replace the authenticator (SIGHUP reload). Cores without one ignore it.
    fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        let _ = authenticator;
    }

    // Sockets and files of the core's own (a cluster node's links and Raft log), driven by the same loop. A
    // single broker has none.

    /// Register the core's sockets with the loop's poller, with tokens from [`CORE_TOKEN_BASE`] up.
    fn attach(&mut self, registry: &mio::Registry) -> io::Result<()> {
        let _ = registry;
        Ok(())
    }
    /// Whether a readiness event is for one of the core's sockets.
    fn owns(&self, token: Token) -> bool {
        let _ = token;
        false
    }
    /// A readiness event on one of the core's sockets.
    fn io_event(&mut self, now: Time, event: &mio::event::Event) {
        let _ = (now, event);
    }
    /// Once per loop turn, after every input of the turn: the core's group commit and its own timers.
    fn end_turn(&mut self, now: Time) {
        let _ = now;
    }
    /// Everything the core has output so far is as durable as the configured sync promises (a group commit with no
    /// record left behind, a snapshot after the disk came back, or no disk): what the core held back for that may go
    /// out. Not called while the disk refuses writes.
    fn durable(&mut self) {}
    /// When the core's own timers (not its protocol timers, see `poll_timeout`) are next due.
    fn io_deadline(&self) -> Option<Instant> {
        None
    }
    /// Why the core cannot go on (its disk failed), if so: the driver stops.
    fn failure(&mut self) -> Option<String> {
        None
    }
}

/// Tokens from here up belong to the core's own sockets (connection ids count up from 1, listeners and signals
/// count down from the top: neither comes near).
pub const CORE_TOKEN_BASE: usize = 1 << 40;

impl Core for Broker {
    fn handle_input(&mut self, now: Time, input: Input<'_>) {
        Broker::handle_input(self, now, input);
    }
    fn poll_output(&mut self) -> Option<Output> {
        Broker::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Broker::poll_timeout(self)
    }
    fn image(&self) -> Image {
        Broker::image(self)
    }
    fn frozen_image(&self) -> FrozenImage {
        Broker::frozen_image(self)
    }
    fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        Broker::set_authenticator(self, authenticator);
    }
    fn stats(&self) -> Stats {
        Broker::stats(self).clone()
    }
    fn gauges(&self) -> Gauges {
        Broker::gauges(self)
    }
    fn partial_input(&self, conn: ConnectionId) -> PartialInput {
        Broker::partial_input(self, conn)
    }
    fn unsent_output(&self, conn: ConnectionId) -> usize {
        Broker::unsent_output(self, conn)
    }
}
