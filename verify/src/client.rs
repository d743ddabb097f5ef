//! The scripted clients, as plain data the checker can hash: what each one has sent and received, what it still
//! owes, and the packets in flight on its connections. Packets are abstracted to the fields the properties read
//! ([`Pkt`]); the world turns them into real bytes for the broker and back.

use mqtt_core::packet::QoS;
use std::collections::{BTreeSet, VecDeque};

/// A packet on the wire, reduced to what matters here. Message `msg` is the publisher's `msg`-th message (its
/// payload is that one byte).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pkt {
    Connect {
        clean_start: bool,
    },
    ConnAck {
        session_present: bool,
        reason: u8,
    },
    Subscribe,
    SubAck,
    Publish {
        pid: u16,
        qos: u8,
        dup: bool,
        msg: u8,
    },
    PubAck {
        pid: u16,
        reason: u8,
    },
    PubRec {
        pid: u16,
        reason: u8,
    },
    PubRel {
        pid: u16,
    },
    PubComp {
        pid: u16,
    },
    Disconnect {
        reason: u8,
    },
    /// Anything the scripted clients do not expect from a broker (named for the story).
    Other(&'static str),
}

/// Where a client's current connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    Offline,
    /// CONNECT sent, CONNACK not yet received.
    Connecting,
    Online,
}

/// A connection the client has replaced by a newer one (a session takeover) while the broker still has it open.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OldLink {
    pub to_broker: VecDeque<Pkt>,
    pub to_client: VecDeque<Pkt>,
    /// The broker closed it.
    pub closed: bool,
    /// The reason code of the DISCONNECT it received, if any.
    pub disconnect: Option<u8>,
    /// It received something after that DISCONNECT.
    pub after_disconnect: bool,
}

/// An outgoing QoS 1/2 message not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Unacked {
    pub pid: u16,
    pub msg: u8,
    pub qos: QoS,
    /// PUBREC received, PUBREL sent.
    pub released: bool,
}

/// Something a client saw that no correct broker does; recorded in the state so a property can report it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Violation {
    /// PUBACK/PUBREC for `msg` reached the publisher's connection before the records that make it durable.
    AckedNotDurable { msg: u8 },
    /// A persistent session came back without Session Present.
    SessionLost { client: usize },
    /// The broker refused a PUBLISH or a CONNECT in a scenario where nothing should be refused.
    Refused { client: usize, what: Pkt },
    /// The broker sent bytes the client could not decode.
    Undecodable { client: usize },
    /// A shared-subscription message went to an offline member while another member was online, or to two.
    SharedMisrouted { msg: u8 },
}

/// One scripted client. Its session state (unacknowledged messages, QoS 2 packet ids awaiting PUBREL) outlives its
/// connections, as the spec asks of a client with a persistent session [MQTT-4.1.0-1].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientView {
    pub link: Link,
    /// The broker closed the current connection; what it sent before still arrives, then the link is offline.
    pub closing: bool,
    pub to_broker: VecDeque<Pkt>,
    pub to_client: VecDeque<Pkt>,
    pub old: Option<OldLink>,
    /// Whether a CONNACK was ever received (a later one must say Session Present).
    pub had_session: bool,
    /// Publisher: the next message to publish, what is unacknowledged (in order), what is completed.
    pub next_msg: u8,
    pub unacked: Vec<Unacked>,
    pub completed: Vec<u8>,
    next_pid: u16,
    /// Subscriber: messages handed to the application, in order of arrival.
    pub received: Vec<u8>,
    /// QoS 2 packet ids received and not yet released (section 4.3.3).
    pub awaiting_release: BTreeSet<u16>,
}

impl ClientView {
    /// A client connected and subscribed by the setup.
    pub fn online() -> ClientView {
        ClientView {
            link: Link::Online,
            closing: false,
            to_broker: VecDeque::new(),
            to_client: VecDeque::new(),
            old: None,
            had_session: true,
            next_msg: 0,
            unacked: Vec::new(),
            completed: Vec::new(),
            next_pid: 1,
            received: Vec::new(),
            awaiting_release: BTreeSet::new(),
        }
    }

    /// Queues the next message; returns it.
    pub fn publish_next(&mut self, qos: QoS) -> u8 {
        let msg = self.next_msg;
        self.next_msg += 1;
        let pid = self.next_pid;
        self.next_pid += 1;
        self.unacked.push(Unacked {
            pid,
            msg,
            qos,
            released: false,
        });
        self.to_broker.push_back(Pkt::Publish {
            pid,
            qos: qos as u8,
            dup: false,
            msg,
        });
        msg
    }

    /// Drops the current connection on the client's side (cut, crash, or closed by the broker).
    pub fn go_offline(&mut self) {
        self.link = Link::Offline;
        self.closing = false;
        self.to_broker.clear();
        self.to_client.clear();
    }

    /// What arrives on a connection the client has replaced is only watched: the client moved to its new
    /// connection (where the broker resends what is unacknowledged) and no longer acts on the old one.
    pub fn receive_on_old(&mut self, packet: &Pkt) {
        let link = self
            .old
            .as_mut()
            .expect("a packet for the old link comes from its queue");
        if link.disconnect.is_some() {
            link.after_disconnect = true;
        }
        if let Pkt::Disconnect { reason } = *packet {
            link.disconnect = Some(reason);
        }
    }

    /// The client reacts to `packet` on its current connection. Returns a violation it noticed, if any.
    pub fn receive(&mut self, index: usize, packet: Pkt) -> Option<Violation> {
        let mut violation = None;
        let mut replies = Vec::new();
        match packet {
            Pkt::ConnAck {
                session_present,
                reason,
            } => {
                if reason != 0 {
                    violation = Some(Violation::Refused {
                        client: index,
                        what: packet,
                    });
                } else {
                    if self.had_session && !session_present {
                        violation = Some(Violation::SessionLost { client: index });
                    }
                    self.had_session = true;
                    self.link = Link::Online;
                    // Resend what is unacknowledged, in the original order [MQTT-4.4.0-1], [MQTT-4.6.0-1].
                    for u in &self.unacked {
                        replies.push(if u.released {
                            Pkt::PubRel { pid: u.pid }
                        } else {
                            Pkt::Publish {
                                pid: u.pid,
                                qos: u.qos as u8,
                                dup: true,
                                msg: u.msg,
                            }
                        });
                    }
                }
            }
            Pkt::Publish { pid, qos, msg, .. } => match qos {
                0 => self.received.push(msg),
                1 => {
                    self.received.push(msg);
                    replies.push(Pkt::PubAck { pid, reason: 0 });
                }
                _ => {
                    // [MQTT-4.3.3-9]: a QoS 2 message is handed on once, however often its PUBLISH arrives before
                    // the PUBREL.
                    if self.awaiting_release.insert(pid) {
                        self.received.push(msg);
                    }
                    replies.push(Pkt::PubRec { pid, reason: 0 });
                }
            },
            Pkt::PubRel { pid } => {
                self.awaiting_release.remove(&pid);
                replies.push(Pkt::PubComp { pid });
            }
            Pkt::PubAck { pid, reason } | Pkt::PubRec { pid, reason } if reason >= 0x80 => {
                let _ = pid;
                violation = Some(Violation::Refused {
                    client: index,
                    what: packet,
                });
            }
            Pkt::PubAck { pid, .. } | Pkt::PubComp { pid } => {
                if let Some(at) = self.unacked.iter().position(|u| u.pid == pid) {
                    let done = self.unacked.remove(at);
                    self.completed.push(done.msg);
                }
            }
            Pkt::PubRec { pid, .. } => {
                if let Some(u) = self.unacked.iter_mut().find(|u| u.pid == pid) {
                    u.released = true;
                }
                replies.push(Pkt::PubRel { pid });
            }
            Pkt::Disconnect { .. } => self.closing = true,
            _ => {}
        }
        self.to_broker.extend(replies);
        violation
    }
}
