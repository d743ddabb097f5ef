//! Connections opened to the broker: on which listener and from which address, and a client's CONNECT.

use super::*;

impl World {
    pub(super) fn open(&mut self, client: Option<usize>) -> Result<ConnectionId, Violation> {
        // The well-behaved clients share one address, the others (misbehaving ones, the retained probe) another,
        // so that `max_connections_per_address` can be exactly the number of clients.
        let host = if client.is_some() { 1 } else { 2 };
        self.open_from(client, host)
    }

    pub(super) fn open_from(&mut self, client: Option<usize>, host: u8) -> Result<ConnectionId, Violation> {
        self.open_on(client, host, ListenerId(0))
    }

    pub(super) fn open_on(
        &mut self,
        client: Option<usize>,
        host: u8,
        listener: ListenerId,
    ) -> Result<ConnectionId, Violation> {
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.links.insert(
            conn,
            Link {
                client,
                shadow: Decoder::new(None, usize::MAX),
                last_to_broker: self.now,
                last_to_client: self.now,
                closed_by_broker: false,
                client_gone: false,
                saw_disconnect: false,
                blocked: false,
                aliases: BTreeMap::new(),
                misbehaving: false,
                segment: None,
                outbound: client.map(|c| Decoder::new(Some(self.clients[c].version), usize::MAX)),
                lost: None,
                zombie: false,
                held: None,
                verdict_lost: false,
                refusal: None,
                auth: None,
                identity: None,
                rest_of_input: Default::default(),
            },
        );
        let peer = SocketAddr::from(([10, 0, 0, host], (conn.0 % 60_000) as u16 + 1));
        self.broker_input(Input::Opened { conn, peer, listener })?;
        Ok(conn)
    }

    /// Whether an earlier connection of `client` is still open at the broker (a zombie does not count: the new
    /// CONNECT is what closes it).
    pub(super) fn previous_open(&self, client: usize) -> bool {
        self.links
            .values()
            .any(|l| l.client == Some(client) && !l.closed_by_broker && !l.zombie)
    }

    pub(super) fn connect(&mut self, client: usize, with_will: bool) -> Result<(), Violation> {
        let certified = self.certified_client(client);
        let conn = match &certified {
            Some(_) => self.open_on(Some(client), 1, crate::acl::IDENTITY_LISTENER)?,
            None => self.open(Some(client))?,
        };
        if let Some(name) = &certified {
            self.identified(conn, name)?;
        }
        self.counts.connects += 1;
        self.clients[client].conn = Some(conn);
        // A client coming back in the liveness phase to leave again has a will with a delay (see `delayed_wills`).
        let forced = self.rearming_delay(client);
        let with_will = with_will || forced.is_some();
        let will_delay = if let Some(delay) = forced {
            delay
        } else if with_will && self.opts.will_delay && self.rng.gen_bool(0.5) {
            self.rng.gen_range(1..=5)
        } else {
            0
        };
        let mut will_options = self.will_options(with_will, will_delay);
        if forced.is_some() && will_options.0 == QoS::AtMostOnce {
            // Owed to its watcher (see `delayed_wills`): a QoS 0 will would be owed to nobody.
            will_options.0 = QoS::AtLeastOnce;
        }
        let mut connect = self.clients[client].connect_packet(with_will, will_delay, will_options);
        if certified.is_some() {
            identity::stale_credentials(&mut connect);
        }
        self.send(client, Packet::Connect(Box::new(connect)));
        // Clients may send packets right after CONNECT, before CONNACK [MQTT-3.1.4-6]: the broker must not answer
        // this one before its CONNACK, however late the verdict comes (checked in `client_receives`).
        if self.opts.quotas.deferred_auth > 0 && self.rng.gen_bool(0.3) {
            self.send(client, Packet::PingReq);
        }
        Ok(())
    }
}
