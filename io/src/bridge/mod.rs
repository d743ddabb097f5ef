//! Bridges in the mio driver, without touching its loop: [`Bridged`] wraps the broker core and is itself the
//! driver's [`Core`]. The bridges' remote sockets are the core's own sockets (`attach`, `owns`, `io_event`, as a
//! cluster node's links are), their timers fold into `poll_timeout`, and each bridge's connection to the local
//! broker is an in-memory connection: `Opened` / `Received` / `Closed` fed to the broker directly, and the broker's
//! `Transmit` / `Close` for it taken out of `poll_output` before the driver sees them.
//!
//! Durability: with `sync = "always"` the driver holds a turn's sends until the group commit at the end of that
//! turn; the broker's acknowledgements to a bridge must wait as long, or the bridge would acknowledge to the remote
//! a message not yet on the local disk. So what the broker hands out for a bridge is held until the driver reports
//! that everything output so far is durable ([`Core::durable`], after a group commit with no record left behind),
//! and released at the next turn's `end_turn`; `poll_timeout` keeps the loop turning for that. A commit that fails
//! (disk full) reports nothing, so the held output waits for the disk like a client's held sends do. (Counting
//! loop turns instead would release it after a failed commit.)

mod remote;
#[cfg(test)]
mod tests;
mod trust;

pub use trust::{BridgeTrust, BRIDGE_LISTENER};

use crate::config::BridgeSettings;
use crate::driver::{Core, CORE_TOKEN_BASE};
use mio::{Interest, Registry, Token};
use mqtt_core::bridge::{self, Bridge, Output as BridgeOutput, Side};
use mqtt_core::broker::{Authenticator, ConnectionId, Gauges, Input, Output, Stats};
use mqtt_core::persist::Image;
use mqtt_core::time::Time;
use remote::{ReadResult, Remote};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Tokens of the bridges' remote sockets: one per bridge, above a cluster node's own.
const BRIDGE_TOKEN_BASE: usize = CORE_TOKEN_BASE + (1 << 32);
/// Connection ids of the bridges' local connections, far above any the driver hands out.
const LOCAL_CONN_BASE: u64 = 1 << 62;
/// At most this many bytes are read from one remote per loop turn, so one busy remote does not hold the loop.
const READ_PER_TURN: usize = 256 * 1024;

/// One bridge and its two connections.
struct Endpoint {
    bridge: Bridge,
    settings: BridgeSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    local: Option<ConnectionId>,
    remote: Option<Remote>,
}

/// The broker core with its bridges (see the module documentation).
pub struct Bridged<C: Core> {
    inner: C,
    bridges: Vec<Endpoint>,
    /// The local bridge client ids, to wrap a reloaded authenticator with.
    ids: Vec<String>,
    now: Time,
    registry: Option<Registry>,
    /// The broker's output for a bridge's local connection, with the bridge's index, in the order handed out.
    held: VecDeque<(usize, Output)>,
    /// How many of `held`, from the front, the last durability report covers: released at the next `end_turn`.
    covered: usize,
    next_local: u64,
    read_buf: Vec<u8>,
    /// The bridges start at the first input after `attach`: what they feed the broker must come out through an
    /// input the driver settles.
    started: bool,
}

impl<C: Core> Bridged<C> {
    /// `inner` must have been given an authenticator wrapped in [`BridgeTrust`] with [`Bridged::local_ids`].
    pub fn new(inner: C, settings: &[BridgeSettings], max_packet_size: u32) -> Result<Bridged<C>, String> {
        let mut bridges = Vec::new();
        for s in settings {
            let tls = match &s.tls {
                Some(tls) => Some(
                    crate::tls::client_config(&tls.ca_file).map_err(|e| format!("bridge {:?}: {e}", s.core.name))?,
                ),
                None => None,
            };
            bridges.push(Endpoint {
                bridge: Bridge::new(s.core.clone(), max_packet_size),
                settings: s.clone(),
                tls,
                local: None,
                remote: None,
            });
        }
        Ok(Bridged {
            inner,
            ids: Self::local_ids(settings),
            bridges,
            now: Time::ZERO,
            registry: None,
            held: VecDeque::new(),
            covered: 0,
            next_local: LOCAL_CONN_BASE,
            read_buf: vec![0; 64 * 1024],
            started: false,
        })
    }

    /// The client ids of the bridges' local connections.
    pub fn local_ids(settings: &[BridgeSettings]) -> Vec<String> {
        settings.iter().map(|s| s.core.local_client_id.clone()).collect()
    }

    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn owner_of(&self, conn: ConnectionId) -> Option<usize> {
        self.bridges.iter().position(|b| b.local == Some(conn))
    }

    /// Carry out bridge `i`'s outputs until it has none.
    fn run_bridge(&mut self, i: usize) {
        while let Some(output) = self.bridges[i].bridge.poll_output() {
            match output {
                BridgeOutput::Open(Side::Local) => {
                    let conn = ConnectionId(self.next_local);
                    self.next_local += 1;
                    self.bridges[i].local = Some(conn);
                    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
                    self.inner.handle_input(
                        self.now,
                        Input::Opened {
                            conn,
                            peer,
                            listener: BRIDGE_LISTENER,
                        },
                    );
                    self.bridges[i]
                        .bridge
                        .handle_input(self.now, bridge::Input::Opened(Side::Local));
                }
                BridgeOutput::Transmit(Side::Local, data) => {
                    if let Some(conn) = self.bridges[i].local {
                        self.inner.handle_input(self.now, Input::Received { conn, data: &data });
                    }
                }
                BridgeOutput::Close(Side::Local) => {
                    if let Some(conn) = self.bridges[i].local.take() {
                        self.inner.handle_input(self.now, Input::Closed { conn });
                    }
                }
                BridgeOutput::Open(Side::Remote) => self.open_remote(i),
                BridgeOutput::Transmit(Side::Remote, data) => {
                    if let Some(remote) = &mut self.bridges[i].remote {
                        remote.send(&data);
                    }
                    self.flush_remote(i);
                }
                BridgeOutput::Close(Side::Remote) => {
                    if let Some(remote) = &mut self.bridges[i].remote {
                        let _ = remote.flush();
                    }
                    self.drop_remote(i);
                }
                BridgeOutput::Event(event) => log_event(&self.bridges[i].bridge.config().name, &event),
            }
        }
    }

    fn open_remote(&mut self, i: usize) {
        let endpoint = &mut self.bridges[i];
        let tls = endpoint
            .tls
            .as_ref()
            .zip(endpoint.settings.tls.as_ref())
            .map(|(config, files)| (config, files.server_name.as_str()));
        let result = Remote::connect(&endpoint.settings.address, tls).and_then(|mut remote| {
            let registry = self
                .registry
                .as_ref()
                .ok_or_else(|| io::Error::other("the driver did not attach the bridges"))?;
            registry.register(
                &mut remote.stream,
                Token(BRIDGE_TOKEN_BASE + i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(remote)
        });
        match result {
            Ok(remote) => endpoint.remote = Some(remote),
            Err(e) => {
                log::warn!(
                    "bridge {}: cannot connect to {}: {e}",
                    endpoint.bridge.config().name,
                    endpoint.settings.address
                );
                endpoint
                    .bridge
                    .handle_input(self.now, bridge::Input::Closed(Side::Remote));
            }
        }
    }

    fn drop_remote(&mut self, i: usize) {
        if let Some(mut remote) = self.bridges[i].remote.take() {
            if let Some(registry) = &self.registry {
                let _ = registry.deregister(&mut remote.stream);
            }
        }
    }

    fn remote_failed(&mut self, i: usize, why: String) {
        log::debug!(
            "bridge {}: remote connection: {why}",
            self.bridges[i].bridge.config().name
        );
        self.drop_remote(i);
        self.bridges[i]
            .bridge
            .handle_input(self.now, bridge::Input::Closed(Side::Remote));
        self.run_bridge(i);
    }

    fn flush_remote(&mut self, i: usize) {
        let Some(remote) = &mut self.bridges[i].remote else {
            return;
        };
        if let Err(e) = remote.flush() {
            self.remote_failed(i, e.to_string());
            return;
        }
        // Back-pressure: a remote that does not read keeps the bridge from publishing more to it.
        let blocked = remote.pending() >= remote::BLOCKED_AT;
        if blocked != remote.blocked {
            remote.blocked = blocked;
            self.bridges[i]
                .bridge
                .handle_input(self.now, bridge::Input::Blocked(Side::Remote, blocked));
            self.run_bridge(i);
        }
    }

    /// Reads what the remote sent, while the bridge has room for it.
    fn read_remote(&mut self, i: usize) {
        let mut budget = READ_PER_TURN;
        while budget > 0 && self.bridges[i].bridge.wants_input(Side::Remote) {
            let Some(remote) = &mut self.bridges[i].remote else {
                return;
            };
            if !remote.readable || !remote.connected {
                return;
            }
            match remote.read(&mut self.read_buf) {
                ReadResult::Data(n) => {
                    budget = budget.saturating_sub(n.max(1));
                    let data = &self.read_buf[..n];
                    if n > 0 {
                        self.bridges[i]
                            .bridge
                            .handle_input(self.now, bridge::Input::Received(Side::Remote, data));
                    }
                    // TLS handshake records may want an answer.
                    self.flush_remote(i);
                    self.run_bridge(i);
                }
                ReadResult::WouldBlock => {
                    remote.readable = false;
                    return;
                }
                ReadResult::Closed(why) => {
                    self.remote_failed(i, why);
                    return;
                }
            }
        }
    }

    fn remote_event(&mut self, i: usize, event: &mio::event::Event) {
        let Some(remote) = &mut self.bridges[i].remote else {
            return;
        };
        if !remote.connected && (event.is_writable() || event.is_error() || event.is_write_closed()) {
            match remote.check_connected() {
                Ok(true) => {
                    remote.connected = true;
                    self.bridges[i]
                        .bridge
                        .handle_input(self.now, bridge::Input::Opened(Side::Remote));
                    self.run_bridge(i);
                }
                Ok(false) => return,
                Err(e) => {
                    self.remote_failed(i, format!("connect failed: {e}"));
                    return;
                }
            }
        }
        let Some(remote) = &mut self.bridges[i].remote else {
            return;
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            remote.readable = true;
        }
        self.flush_remote(i);
        self.read_remote(i);
    }

    /// Hands the bridges what the broker sent them that is on disk now (see the module documentation).
    fn release_held(&mut self) {
        while self.covered > 0 {
            self.covered -= 1;
            let Some((i, output)) = self.held.pop_front() else {
                break;
            };
            let now = self.now;
            let endpoint = &mut self.bridges[i];
            match output {
                Output::Transmit { conn, data } if endpoint.local == Some(conn) => {
                    endpoint
                        .bridge
                        .handle_input(now, bridge::Input::Received(Side::Local, &data));
                }
                Output::Close { conn } if endpoint.local == Some(conn) => {
                    endpoint.local = None;
                    endpoint.bridge.handle_input(now, bridge::Input::Closed(Side::Local));
                }
                // For a local connection the bridge has replaced meanwhile.
                _ => {}
            }
            self.run_bridge(i);
        }
    }

    fn tick_bridges(&mut self) {
        if !self.started && self.registry.is_some() {
            self.started = true;
            for i in 0..self.bridges.len() {
                self.bridges[i].bridge.start(self.now);
            }
        }
        for i in 0..self.bridges.len() {
            if self.bridges[i].bridge.poll_timeout().is_some_and(|t| t <= self.now) {
                self.bridges[i].bridge.handle_input(self.now, bridge::Input::Tick);
            }
            self.run_bridge(i);
        }
    }
}

impl<C: Core> Core for Bridged<C> {
    fn handle_input(&mut self, now: Time, input: Input<'_>) {
        self.now = self.now.max(now);
        let shutdown = matches!(input, Input::Shutdown);
        let tick = matches!(input, Input::Tick);
        if shutdown {
            for i in 0..self.bridges.len() {
                self.bridges[i].bridge.stop(self.now);
                self.run_bridge(i);
            }
        }
        self.inner.handle_input(now, input);
        if tick {
            self.tick_bridges();
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        loop {
            let output = self.inner.poll_output()?;
            let conn = match &output {
                Output::Transmit { conn, .. } | Output::Close { conn } => Some(*conn),
                _ => None,
            };
            match conn.and_then(|conn| self.owner_of(conn)) {
                Some(i) => self.held.push_back((i, output)),
                None => return Some(output),
            }
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        // Durable held output and bridges not yet started want the next turn at once.
        let held = (self.covered > 0 || (!self.started && !self.bridges.is_empty())).then_some(self.now);
        let bridges = self.bridges.iter().filter_map(|b| b.bridge.poll_timeout()).min();
        [self.inner.poll_timeout(), bridges, held].into_iter().flatten().min()
    }

    fn image(&self) -> Image {
        self.inner.image()
    }

    fn frozen_image(&self) -> mqtt_core::broker::FrozenImage {
        self.inner.frozen_image()
    }

    fn stats(&self) -> Stats {
        self.inner.stats()
    }

    fn gauges(&self) -> Gauges {
        self.inner.gauges()
    }

    fn partial_input(&self, conn: mqtt_core::broker::ConnectionId) -> mqtt_core::broker::PartialInput {
        self.inner.partial_input(conn)
    }

    fn unsent_output(&self, conn: mqtt_core::broker::ConnectionId) -> usize {
        self.inner.unsent_output(conn)
    }

    fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        self.inner
            .set_authenticator(Box::new(BridgeTrust::new(authenticator, self.ids.clone())));
    }

    fn attach(&mut self, registry: &Registry) -> io::Result<()> {
        self.inner.attach(registry)?;
        self.registry = Some(registry.try_clone()?);
        Ok(())
    }

    fn owns(&self, token: Token) -> bool {
        (BRIDGE_TOKEN_BASE..BRIDGE_TOKEN_BASE + self.bridges.len()).contains(&token.0) || self.inner.owns(token)
    }

    fn io_event(&mut self, now: Time, event: &mio::event::Event) {
        self.now = self.now.max(now);
        match event.token().0.checked_sub(BRIDGE_TOKEN_BASE) {
            Some(i) if i < self.bridges.len() => self.remote_event(i, event),
            _ => self.inner.io_event(now, event),
        }
    }

    fn end_turn(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.inner.end_turn(now);
        self.release_held();
        for i in 0..self.bridges.len() {
            self.read_remote(i);
        }
        self.tick_bridges();
    }

    fn durable(&mut self) {
        self.inner.durable();
        self.covered = self.held.len();
    }

    fn io_deadline(&self) -> Option<Instant> {
        self.inner.io_deadline()
    }

    fn failure(&mut self) -> Option<String> {
        self.inner.failure()
    }
}

fn log_event(name: &str, event: &bridge::Event) {
    match event {
        bridge::Event::Connected { side, session_present } => {
            log::info!("bridge {name}: connected to the {side:?} broker (session present: {session_present})")
        }
        bridge::Event::Disconnected { side, reason, retry_in } => log::warn!(
            "bridge {name}: {side:?} connection lost ({reason}); retrying in {} ms",
            retry_in.as_millis()
        ),
        bridge::Event::SubscribeRefused { side, filter, reason } => {
            log::error!(
                "bridge {name}: the {side:?} broker refused the subscription to {filter:?} (0x{:02X})",
                reason.0
            )
        }
        bridge::Event::Dropped { from, topic, why } => {
            log::warn!("bridge {name}: dropped a message from the {from:?} broker on {topic:?}: {why}")
        }
    }
}
