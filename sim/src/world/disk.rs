//! The simulated disk and broker crashes.
//!
//! The broker's records are framed exactly as on a real disk (`mqtt_core::persist::log`) and committed at the end of
//! every broker input, before that input's outputs reach the network: the group commit of `sync = "always"`. A crash
//! kills the broker either between inputs or in the middle of committing one: then that input's records are torn at
//! a random byte (maybe with a flipped bit) and its outputs never leave. The restarted broker is rebuilt from what
//! replaying the disk gives, and that must be exactly the durable state as of the last commit: nothing
//! acknowledged lost, nothing unacknowledged half-applied.

use super::*;
use mqtt_core::persist::{frame, log, Image, Record};
use std::collections::BTreeSet;

#[derive(Default)]
pub(super) struct SimDisk {
    /// Synced bytes.
    pub log: Vec<u8>,
    /// Framed records of the current input, not yet committed.
    pending: BytesMut,
    scratch: BytesMut,
    pub commits: u64,
    /// Writes fail, as on a full disk (ENOSPC).
    pub full: bool,
}

/// The broker's storage is suspended after a failed commit (see the driver's `suspend_storage`): the outputs of the
/// failed commit, and everything after them on the same connections, wait for the disk; records are not kept.
pub(super) struct Suspension {
    /// The durable state and the model as of the last good commit: what a crash now goes back to.
    image_before: Image,
    model_before: Model,
    held_conns: BTreeSet<ConnectionId>,
    held_outputs: Vec<Output>,
    /// When the disk has room again.
    resume_at: u64,
}

impl SimDisk {
    pub fn append(&mut self, record: &Record) {
        log::append(&mut self.pending, record, &mut self.scratch);
    }

    /// Writes the pending records; false when the disk refuses them (they are dropped, as the driver drops them).
    pub fn commit(&mut self) -> bool {
        if self.full {
            let failed = !self.pending.is_empty();
            self.pending.clear();
            return !failed;
        }
        if !self.pending.is_empty() {
            self.log.extend_from_slice(&self.pending);
            self.pending.clear();
            self.commits += 1;
        }
        true
    }

    /// The crash hits while the pending records are being written: a strict prefix of the first frame reaches the
    /// disk (so no record of the torn input survives whole), sometimes with a bit flipped.
    fn tear(&mut self, rng: &mut ChaCha8Rng) -> usize {
        let written = match frame::scan(&self.pending, 0) {
            frame::Scan::Frame { next, .. } if next > 1 => rng.gen_range(1..next),
            _ => 0,
        };
        let start = self.log.len();
        self.log.extend_from_slice(&self.pending[..written]);
        if written > 0 && rng.gen_bool(0.3) {
            let at = start + rng.gen_range(0..written);
            if let Some(byte) = self.log.get_mut(at) {
                *byte ^= 1 << rng.gen_range(0..8);
            }
        }
        self.pending.clear();
        written
    }

    /// Replays the disk as recovery does; a torn tail is truncated, damage with valid data after it is a violation.
    fn recover(&mut self) -> Result<Image, Violation> {
        let mut image = Image::default();
        let replay = log::replay(&self.log, &mut image);
        if let Some(damage) = &replay.damage {
            if !damage.torn_tail {
                return Err(Violation(format!(
                    "recovery: damage in the middle of the log at byte {} ({}), but only the tail was torn",
                    damage.offset, damage.detail
                )));
            }
            self.log.truncate(replay.valid_len);
        }
        image.collect_garbage();
        Ok(image)
    }

    /// A fresh snapshot of the recovered state replaces the log, as the real broker does on start-up.
    fn compact(&mut self, image: &Image) {
        self.log.clear();
        let mut out = BytesMut::new();
        for record in image.to_records() {
            log::append(&mut out, &record, &mut self.scratch);
        }
        self.log.extend_from_slice(&out);
    }
}

impl World {
    /// The durable state the disk holds must be what the broker holds.
    pub(super) fn check_disk_matches_broker(&mut self) -> Result<(), Violation> {
        let Some(disk) = self.disk.as_mut() else {
            return Ok(());
        };
        let recovered = disk.recover()?;
        compare_images(&recovered, &self.broker.image(), "the records on disk rebuild")
    }

    /// Kills the broker and starts a new one from the disk. `torn`: the crash hit while the current input's records
    /// were being written (they are torn, its outputs dropped) and `model_before` is the model as it was before
    /// that input.
    pub(super) fn restart_broker(
        &mut self,
        torn: bool,
        image_before: Image,
        model_before: Option<Model>,
    ) -> Result<(), Violation> {
        let Some(mut disk) = self.disk.take() else {
            return Ok(());
        };
        // With storage suspended, the disk holds the state of the last good commit, and the model goes back there.
        let (torn, image_before, model_before) = match self.suspension.take() {
            Some(s) => (false, s.image_before, Some(s.model_before)),
            None => (torn, image_before, model_before),
        };
        disk.full = false;
        let torn_bytes = if torn { disk.tear(&mut self.rng) } else { 0 };
        self.counts.broker_restarts += 1;
        self.log(format!(
            "=== broker crash{} ===",
            if torn {
                format!(" during a commit ({torn_bytes} bytes of it on disk)")
            } else {
                String::new()
            }
        ));
        let recovered = disk.recover()?;
        compare_images(&recovered, &image_before, "recovery after a crash rebuilds")?;
        disk.compact(&recovered);
        self.disk = Some(disk);
        if let Some(model) = model_before {
            self.model = model;
        }
        self.chunk_publishes.clear();
        // Held PUBLISHes die unrouted with their connections: a QoS 2 one's packet id is free again.
        for pending in std::mem::take(&mut self.awaiting_admission) {
            if pending.publish.qos == QoS::ExactlyOnce {
                self.model.forget_qos2(pending.client, pending.publish.packet_id);
            }
        }

        // Every connection dies with the process: what was on its way to the broker is lost; what the broker had
        // already sent still arrives, then the close.
        let open: Vec<(ConnectionId, Option<usize>)> = self
            .links
            .iter()
            .filter(|(_, l)| !l.closed_by_broker)
            .map(|(c, l)| (*c, l.client))
            .collect();
        let to_broker: Vec<(u64, u64)> = self
            .queue
            .iter()
            .filter(|(_, e)| matches!(e, Event::ToBroker { .. }))
            .map(|(k, _)| *k)
            .collect();
        for key in to_broker {
            self.queue.remove(&key);
        }
        for (conn, client) in open {
            let Some(link) = self.links.get_mut(&conn) else {
                continue;
            };
            link.closed_by_broker = true;
            let at = self.now.max(link.last_to_client);
            self.schedule(at, Event::ClientSeesClose { conn });
            if let Some(client) = client {
                self.connection_lost_in_broker_crash(client, conn);
            }
        }

        self.dropped_before_restarts += self.broker.stats().messages_dropped;
        let mut broker = new_broker(&self.opts, self.config.clone(), self.rng.gen());
        broker.restore(Time::from_millis(self.now), recovered);
        self.broker = broker;
        Ok(())
    }

    /// A commit failed (disk full): hold the input's outputs, tell the broker, keep the state to go back to on a
    /// crash. `before`: the model and durable state from before this input.
    pub(super) fn suspend_storage(&mut self, outputs: Vec<Output>, before: (Model, Image)) -> Result<(), Violation> {
        // A close is not held (the broker is done with the connection); bytes held for it are lost when the
        // driver gives up flushing, as the real driver's close deadline does.
        let (held_outputs, passed): (Vec<Output>, Vec<Output>) =
            outputs.into_iter().partition(|o| matches!(o, Output::Transmit { .. }));
        let held_conns: BTreeSet<ConnectionId> = held_outputs
            .iter()
            .filter_map(|o| match o {
                Output::Transmit { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        let resume_at = self.now + self.rng.gen_range(50..5_000);
        self.log(format!(
            "=== disk full: storage suspended until {resume_at}ms, holding {held_conns:?} ==="
        ));
        self.counts.disk_full += 1;
        let (model_before, image_before) = before;
        self.suspension = Some(Suspension {
            image_before,
            model_before,
            held_conns,
            held_outputs,
            resume_at,
        });
        for output in passed {
            self.route_output(output)?;
        }
        self.broker_input(Input::StorageWritable(false))
    }

    /// Outputs for a connection with held output wait behind it; the rest go out.
    pub(super) fn hold_if_suspended(&mut self, output: Output) -> Option<Output> {
        let Some(suspension) = self.suspension.as_mut() else {
            return Some(output);
        };
        let conn = match &output {
            Output::Transmit { conn, .. } => *conn,
            _ => return Some(output),
        };
        if suspension.held_conns.contains(&conn) {
            suspension.held_outputs.push(output);
            None
        } else {
            Some(output)
        }
    }

    /// The disk has room again (or the liveness phase began): snapshot the whole state, release what was held.
    pub(super) fn resume_storage_if_due(&mut self, force: bool) -> Result<(), Violation> {
        if !self
            .suspension
            .as_ref()
            .is_some_and(|s| force || self.now >= s.resume_at)
        {
            return Ok(());
        }
        let Some(suspension) = self.suspension.take() else {
            return Ok(());
        };
        let image = self.broker.image();
        if let Some(disk) = self.disk.as_mut() {
            disk.full = false;
            disk.compact(&image);
        }
        self.log("=== disk has room again: snapshot written, held output released ===".into());
        for output in suspension.held_outputs {
            let open = match &output {
                Output::Transmit { conn, .. } => self.links.get(conn).is_some_and(|l| !l.closed_by_broker),
                _ => true,
            };
            if open {
                self.route_output(output)?;
            }
        }
        self.broker_input(Input::StorageWritable(true))
    }

    /// The client's connection died with the broker: the new broker knows nothing of its will (a connection's will
    /// is not durable), and a session that ended with its connection is gone.
    fn connection_lost_in_broker_crash(&mut self, client: usize, conn: ConnectionId) {
        let current = self.clients[client].conn == Some(conn);
        if !current {
            return;
        }
        if let Some(id) = self.clients[client].armed_will.take() {
            if self.model.wills.get(&id) == Some(&WillState::Armed) {
                self.model.wills.insert(id, WillState::Discarded);
            }
        }
        if !self.clients[client].persistent {
            self.model.on_session_end(client);
        }
    }
}

fn compare_images(found: &Image, expected: &Image, what: &str) -> Result<(), Violation> {
    let mut found = found.clone();
    let mut expected = expected.clone();
    if found.orphan_records != 0 {
        return Err(Violation(format!(
            "{what}: {} records refer to state that does not exist",
            found.orphan_records
        )));
    }
    found.orphan_records = 0;
    expected.orphan_records = 0;
    if found == expected {
        return Ok(());
    }
    let detail = if found.retained != expected.retained {
        format!(
            "retained topics {:?} vs {:?}",
            found.retained.keys().collect::<Vec<_>>(),
            expected.retained.keys().collect::<Vec<_>>()
        )
    } else if found.sessions.keys().ne(expected.sessions.keys()) {
        format!(
            "sessions {:?} vs {:?}",
            found.sessions.keys().collect::<Vec<_>>(),
            expected.sessions.keys().collect::<Vec<_>>()
        )
    } else if let Some((key, (a, b))) = found
        .sessions
        .iter()
        .zip(expected.sessions.values())
        .map(|((k, a), b)| (k, (a, b)))
        .find(|(_, (a, b))| a != b)
    {
        let field = if a.client_id != b.client_id || a.protocol != b.protocol || a.expiry != b.expiry {
            format!(
                "identity/expiry {:?}/{}",
                (&a.client_id, a.protocol, a.expiry),
                b.expiry
            )
        } else if a.offline_since != b.offline_since {
            format!("offline since {:?} vs {:?}", a.offline_since, b.offline_since)
        } else if a.subscriptions != b.subscriptions {
            format!(
                "subscriptions {:?} vs {:?}",
                a.subscriptions.keys().collect::<Vec<_>>(),
                b.subscriptions.keys().collect::<Vec<_>>()
            )
        } else if a.entries != b.entries {
            let diff: Vec<String> = a
                .entries
                .iter()
                .filter(|(seq, e)| b.entries.get(seq) != Some(e))
                .map(|(seq, e)| format!("{seq}: {e:?}"))
                .chain(
                    b.entries
                        .iter()
                        .filter(|(seq, _)| !a.entries.contains_key(seq))
                        .map(|(seq, e)| format!("missing {seq}: {e:?}")),
                )
                .take(4)
                .collect();
            format!("queue entries differ: {diff:?}")
        } else if a.incoming_qos2 != b.incoming_qos2 {
            format!("incoming QoS 2 ids {:?} vs {:?}", a.incoming_qos2, b.incoming_qos2)
        } else {
            format!("pending will {:?} vs {:?}", a.will, b.will)
        };
        format!("session {key} ({}): {field}", a.client_id)
    } else {
        format!(
            "stored messages {:?} vs {:?}",
            found.messages.keys().collect::<Vec<_>>(),
            expected.messages.keys().collect::<Vec<_>>()
        )
    };
    Err(Violation(format!(
        "{what} a different state than the broker had: {detail} [durability]"
    )))
}
