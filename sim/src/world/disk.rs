//! The simulated disk and broker crashes: the real storage code (`mqtt_storage`, the same as the binary's) on a
//! simulated file system with faults (`crate::simfs`).
//!
//! The broker's records are committed at the end of every broker input, before that input's outputs reach the
//! network, and the log is compacted into a new snapshot (a generation switch) as the driver does: the group commit
//! of `sync = "always"`. As in the driver, a snapshot freezes the state and starts the next log at one input, and is
//! written later, while commits go on to the new log: at the end of the same input or of one of the next few, a
//! moment drawn from the seed (the driver's thread, made deterministic). A crash kills the broker between inputs or, armed on the disk, in the middle of the
//! storage operations of an input (its commit, or the snapshot and generation switch after it): then that input's
//! outputs never leave, and what it wrote may be torn anywhere. The restarted broker is rebuilt by the real
//! recovery, which must either refuse to start, naming a file and offset where the disk really damaged synced data,
//! or restore exactly the state the model says was committed (`durability`).

use super::*;
use crate::simfs::{DiskFaults, SimFs};
use mqtt_core::persist::frame::{self, Scan};
use mqtt_core::persist::{Image, Record, RetainedSink};
use mqtt_storage::{snapshot_path, wal_path, SnapshotJob, Storage, StorageError, SyncMode};
use rand::Rng;
use std::path::{Path, PathBuf};

/// Where the broker keeps its data on the simulated disk.
const DATA_DIR: &str = "/data";
/// The driver retries a suspended storage this often (`io`'s `STORAGE_RETRY`).
const RETRY_MS: u64 = 1_000;

pub(super) struct SimDisk {
    pub fs: SimFs,
    storage: Storage<SimFs>,
    /// Recoveries that refused to start.
    refusals: u64,
    /// A power cut waits for the next compaction, to strike during its `n`-th storage operation.
    cut_in_compaction: Option<u32>,
    compact_bytes: u64,
    /// A snapshot frozen at an earlier input, written at the end of a later one.
    deferred: Option<Deferred>,
    /// Draws the moments deferred snapshots are written (a stream of its own: the disk's faults draw as before).
    moments: ChaCha8Rng,
    #[cfg(feature = "planted-bugs")]
    planted: Option<mqtt_storage::PlantedBug>,
}

/// What the group commit of one input did.
pub(super) enum Commit {
    Done,
    /// Committed, then compacted into the snapshot of this new generation.
    Compacted(u64),
    /// The disk refused the records (ENOSPC, EIO): the driver suspends storage.
    Failed(StorageError),
    /// The armed power cut struck; `committed`: after the records were synced (during the compaction after them).
    PowerCut {
        committed: bool,
    },
}

/// A snapshot whose moment was frozen (its log started), waiting to be written.
struct Deferred {
    job: SnapshotJob,
    image: Image,
    /// Commits still to go before it is written.
    after: u32,
}

/// At most this many inputs pass between a snapshot's freeze and its write.
const MAX_DEFERRAL: u32 = 4;

/// Where an armed power cut strikes (see `World::power_cut_in`).
#[derive(Debug, Clone, Copy)]
pub(super) enum PowerCut {
    /// During the `n`-th storage operation from now (of chunks the broker reads).
    AfterOps(u32),
    /// During the `n`-th storage operation of the next compaction (snapshot, rename, generation switch).
    InCompaction(u32),
}

/// The broker's storage is suspended after a failed commit (see the driver's `suspend_storage`): the outputs of the
/// failed commit, and everything after them on the same connections, wait for the disk; records are not kept.
pub(super) struct Suspension {
    held_conns: BTreeSet<ConnectionId>,
    held_outputs: Vec<Output>,
    /// When the driver next tries to write the snapshot that ends the suspension.
    retry_at: u64,
}

impl SimDisk {
    /// A fresh data directory on a fresh disk.
    pub fn new(opts: &Options, rng: ChaCha8Rng) -> SimDisk {
        let faults = DiskFaults {
            eio_rate: opts.disk.eio_rate,
            max_eio: opts.disk.max_eio,
        };
        let mut moments = rng.clone();
        moments.set_stream(0x5eed);
        let fs = SimFs::new(rng, faults);
        fs.set_quiet(true);
        // A fresh directory on a working disk opens.
        let (mut storage, _, _) = Storage::open_in(fs.clone(), Path::new(DATA_DIR), SyncMode::Always, false)
            .expect("a fresh simulated data directory opens");
        fs.set_quiet(false);
        storage.set_min_compact_bytes(opts.disk.compact_bytes);
        // No wall clock here: a failed snapshot is retried at the next commit (still deterministic).
        storage.set_snapshot_retry(std::time::Duration::ZERO);
        SimDisk {
            fs,
            storage,
            refusals: 0,
            cut_in_compaction: None,
            compact_bytes: opts.disk.compact_bytes,
            deferred: None,
            moments,
            #[cfg(feature = "planted-bugs")]
            planted: None,
        }
    }

    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: Option<mqtt_storage::PlantedBug>) {
        self.planted = bug;
        self.storage.plant(bug);
    }

    /// Arms `cut` for the storage operations of one input; see `disarm`.
    pub fn arm(&mut self, cut: PowerCut) {
        match cut {
            PowerCut::AfterOps(ops) => self.fs.arm_power_cut(ops),
            PowerCut::InCompaction(ops) => self.cut_in_compaction = Some(ops),
        }
    }

    /// Takes back what `arm` armed and did not strike, for the next input.
    pub fn disarm(&mut self, cut: PowerCut) -> Option<PowerCut> {
        match cut {
            PowerCut::AfterOps(_) => self.fs.disarm_power_cut().map(PowerCut::AfterOps),
            PowerCut::InCompaction(_) => self.cut_in_compaction.take().map(PowerCut::InCompaction),
        }
    }

    pub fn append(&mut self, record: &Record) {
        self.storage.append(record);
    }

    /// The driver's group commit, then its compaction if the log has grown (`commit_and_flush`).
    pub fn commit(&mut self, image: impl FnOnce() -> Image) -> Commit {
        if let Err(e) = self.storage.commit() {
            return if self.fs.crashed() {
                Commit::PowerCut { committed: false }
            } else {
                Commit::Failed(e)
            };
        }
        let mut compacted = None;
        if self.deferred.is_none() && self.storage.wants_snapshot() {
            compacted = self.freeze(image);
        } else if let Some(deferred) = self.deferred.as_mut() {
            match deferred.after.checked_sub(1) {
                Some(after) => deferred.after = after,
                None => compacted = self.write_deferred(),
            }
        }
        // Also where storage ignores the failure (removing the files of older generations).
        if self.fs.crashed() {
            return Commit::PowerCut { committed: true };
        }
        compacted.map_or(Commit::Done, Commit::Compacted)
    }

    /// The freeze of a compaction (the driver's `start_snapshot`): the next log starts now, with `image`, the state
    /// now, to be written at the end of this input or of one of the next few. Returns the generation if it was
    /// written at once.
    fn freeze(&mut self, image: impl FnOnce() -> Image) -> Option<u64> {
        let cut = self.cut_in_compaction.take();
        if let Some(ops) = cut {
            self.fs.arm_power_cut(ops);
        }
        let frozen = self.storage.begin_snapshot();
        if cut.is_some() {
            // What the freeze left of the cut waits for the write (at this input, or at a later one the world arms
            // it for again).
            self.cut_in_compaction = self.fs.disarm_power_cut();
        }
        // A failed freeze is only logged by the driver: commits go on to the current log.
        let job = frozen.ok()?;
        self.deferred = Some(Deferred {
            job,
            image: image(),
            after: self.moments.gen_range(0..=MAX_DEFERRAL),
        });
        match self.deferred.as_ref().map(|d| d.after) {
            Some(0) => self.write_deferred(),
            _ => None,
        }
    }

    /// Writes the deferred snapshot (the driver's thread) and finishes it; returns its generation if it succeeded.
    fn write_deferred(&mut self) -> Option<u64> {
        let deferred = self.deferred.take()?;
        if self.fs.crashed() {
            return None;
        }
        let cut = self.cut_in_compaction.take();
        if let Some(ops) = cut {
            self.fs.arm_power_cut(ops);
        }
        let written = deferred.job.write(&self.fs, deferred.image.to_records());
        if cut.is_some() {
            // Spent, whether it struck or the write had fewer operations.
            self.fs.disarm_power_cut();
        }
        let generation = deferred.job.generation();
        // A failed snapshot is only logged by the driver: the log keeps growing until one succeeds.
        self.storage.finish_snapshot(deferred.job, written).ok()?;
        Some(generation)
    }

    /// Snapshot the whole state and take records again (the driver's `try_resume_storage`, which first waits for
    /// the snapshot being written in the background).
    fn resume(&mut self, image: &Image) -> Result<(), StorageError> {
        self.write_deferred();
        self.storage.resume(image)
    }

    /// Flips a bit in synced data of a snapshot or log (not in a log's last frame, which recovery cannot tell from
    /// a torn write: see `mqtt_storage`'s recovery).
    pub fn flip_bit(fs: &SimFs) -> Option<crate::simfs::Flip> {
        fs.flip_bit(|path, synced| {
            let name = path.file_name()?.to_str()?;
            if name.ends_with(".snap") {
                return Some(0..synced.len());
            }
            if !name.ends_with(".log") {
                return None;
            }
            // Up to the start of the last whole frame.
            let (mut offset, mut last) = (0, 0);
            while let Scan::Frame { next, .. } = frame::scan(synced, offset) {
                last = offset;
                offset = next;
            }
            Some(0..last)
        })
    }

    /// Opens the data directory as the binary does: retained messages go straight into the new broker's tree
    /// (`retained`) as they are read, and the snapshot the start writes takes them from there.
    fn open(
        &self,
        dir: &Path,
        retained: &mut dyn RetainedSink,
    ) -> Result<(Storage<SimFs>, Image, mqtt_storage::Recovery), StorageError> {
        #[cfg(feature = "planted-bugs")]
        return Storage::open_with_bug_into(self.fs.clone(), dir, SyncMode::Always, false, self.planted, retained);
        #[cfg(not(feature = "planted-bugs"))]
        Storage::open_in_into(self.fs.clone(), dir, SyncMode::Always, false, retained)
    }

    /// The real recovery after a power cut. A refusal is legal only where the disk flipped a bit in synced data:
    /// then the operator restores the damaged file (the flips are undone) and starts again. A restore from a file
    /// with a flipped bit in it, which the checksums must catch, is a violation too.
    ///
    /// Each attempt recovers into a broker of its own (`fresh`, at the restart's time `now`), which is returned
    /// with the image; the image's `retained` holds what recovery put into that broker's tree (what the start's
    /// snapshot wrote), for the model to check, and must be emptied before `restore`.
    fn recover(
        &mut self,
        log: &mut Vec<String>,
        fresh: impl Fn() -> Broker,
        now: Time,
    ) -> Result<(Broker, Image), Violation> {
        let dir = PathBuf::from(DATA_DIR);
        self.fs.set_quiet(true);
        let mut healed = false;
        let (mut storage, image, recovery, flips, broker) = loop {
            let flips = self.fs.flips();
            let mut broker = fresh();
            let opened = {
                let mut sink = broker.retained_recovery(now);
                self.open(&dir, &mut sink).map(|(storage, mut image, recovery)| {
                    image.retained = sink
                        .records()
                        .filter_map(|record| match record {
                            Record::Retain { message } => Some((message.topic.clone(), *message)),
                            _ => None,
                        })
                        .collect();
                    (storage, image, recovery)
                })
            };
            match opened {
                Ok((storage, image, recovery)) => break (storage, image, recovery, flips, broker),
                Err(StorageError::Corrupt { path, offset, detail }) => {
                    let damaged = flips.iter().find(|f| f.path == path && f.offset >= offset);
                    match damaged {
                        Some(flip) if !healed => {
                            self.refusals += 1;
                            log.push(format!(
                                "recovery refuses to start: {} is corrupt at byte {offset} ({detail}); the disk \
                                 flipped a bit at byte {}: the file is restored and the broker started again",
                                path.display(),
                                flip.offset
                            ));
                            self.fs.heal_flips();
                            healed = true;
                        }
                        _ => {
                            return Err(Violation(format!(
                                "recovery refused to start: {} is corrupt at byte {offset} ({detail}), but the \
                                 disk damaged no synced data there (flips: {flips:?}) [durability]",
                                path.display()
                            )))
                        }
                    }
                }
                Err(e) => {
                    return Err(Violation(format!(
                        "recovery failed on a working disk: {e} [durability]"
                    )))
                }
            }
        };
        // The snapshot and every log of the chain replayed after it.
        let read: Vec<PathBuf> = std::iter::once(snapshot_path(&dir, recovery.first_generation))
            .chain((recovery.first_generation..=recovery.generation).map(|g| wal_path(&dir, g)))
            .collect();
        if let Some(flip) = flips.iter().find(|f| read.contains(&f.path)) {
            return Err(Violation(format!(
                "recovery restored generation {} without noticing the bit flipped in {} at byte {} [durability]",
                recovery.generation,
                flip.path.display(),
                flip.offset
            )));
        }
        log.push(format!(
            "recovered generation {}{}: {} snapshot and {} log records, {} torn bytes truncated",
            recovery.generation,
            if recovery.first_generation < recovery.generation {
                format!(" (snapshot {} and its logs on)", recovery.first_generation)
            } else {
                String::new()
            },
            recovery.snapshot_records,
            recovery.log_records,
            recovery.truncated_bytes
        ));
        self.fs.set_quiet(false);
        storage.set_min_compact_bytes(self.compact_bytes);
        storage.set_snapshot_retry(std::time::Duration::ZERO);
        #[cfg(feature = "planted-bugs")]
        storage.plant(self.planted);
        self.storage = storage;
        // The thread writing a snapshot died with the process.
        self.deferred = None;
        Ok((broker, image))
    }
}

impl World {
    /// Plants a known bug in the storage code (the vopr's self-test).
    #[cfg(feature = "planted-bugs")]
    pub fn plant_storage_bug(&mut self, bug: mqtt_storage::PlantedBug) {
        if let Some(disk) = self.disk.as_mut() {
            disk.plant(Some(bug));
        }
    }

    /// Kills the broker (the power goes out) and starts a new one from what recovery makes of the disk.
    /// `candidates`: the models of the states recovery may legally restore (before and after the input whose
    /// commit the crash interrupted; just the current one for a crash between inputs). The first that matches
    /// becomes the model. The last is the current one, in which the PUBLISHes the broker holds now die unrouted;
    /// the caller has done the same for the others (see `forget_held`).
    pub(super) fn restart_broker(&mut self, candidates: Vec<Model>, during: &str) -> Result<(), Violation> {
        let Some(mut disk) = self.disk.take() else {
            return Ok(());
        };
        debug_assert!(self.suspension.is_none(), "no crash while storage is suspended");
        let lost = disk.fs.power_cut();
        self.counts.broker_restarts += 1;
        self.log(format!(
            "=== broker crash (power cut){during}: {lost} unsynced bytes lost or torn ==="
        ));
        // The new broker exists before recovery, which reads retained messages into its tree at its clock.
        let seed = self.rng.gen();
        let jump = self.draw_restart_jump();
        let now = self.broker_now();
        let mut lines = Vec::new();
        let recovered = disk.recover(&mut lines, || new_broker(&self.opts, self.config.clone(), seed), now);
        for line in lines {
            self.log(line);
        }
        let (mut broker, mut recovered) = recovered?;
        self.counts.recovery_refusals = disk.refusals;
        self.counts.disk = disk.fs.counts();
        self.disk = Some(disk);
        // Held PUBLISHes die unrouted with their connections: a QoS 2 one's packet id is free again.
        let held = std::mem::take(&mut self.awaiting_admission);
        let mut mismatches = Vec::new();
        let mut chosen = None;
        let last = candidates.len().saturating_sub(1);
        // A held PUBLISH whose publisher stopped reading may have been admitted (and its QoS 2 id recorded)
        // without the model seeing the acknowledgement (see `admission`): recovery may show it either way.
        let admitted_unseen = |p: &PendingPublish| {
            p.blind
                && recovered.sessions.values().any(|s| {
                    s.client_id == self.clients[p.client].client_id && s.incoming_qos2.contains(&p.publish.packet_id)
                })
        };
        let forgotten: Vec<PendingPublish> = held.iter().filter(|p| !admitted_unseen(p)).cloned().collect();
        let candidates: Vec<Model> = candidates
            .into_iter()
            .enumerate()
            .map(|(i, mut model)| {
                if i == last {
                    forget_held(&mut model, &forgotten);
                }
                model
            })
            .collect();
        // First by every check, the number of copies of each message in a queue too; then, should no candidate pass
        // that, without it (see `copies_match`).
        for exact in [true, false] {
            for model in &candidates {
                let matched = self.image_matches_model(&recovered, model, &held).and_then(|()| {
                    if exact {
                        self.copies_match(&recovered, model, &held)
                    } else {
                        Ok(())
                    }
                });
                match matched {
                    Ok(()) => {
                        chosen = Some(model.clone());
                        break;
                    }
                    Err(mismatch) if !exact => mismatches.push(mismatch),
                    Err(_) => {}
                }
            }
            if chosen.is_some() {
                break;
            }
        }
        let Some(model) = chosen else {
            return Err(Violation(format!(
                "recovery after a crash restored a state the model does not allow: {} [durability]",
                mismatches.join("; or ")
            )));
        };
        self.model = model;
        self.adopt_unseen_admissions(&recovered, &held, &admitted_unseen_ids(&held, &forgotten));
        self.chunk_publishes.clear();
        self.chunk_retained_after.clear();

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
        self.model.on_broker_restart();
        self.apply_restart_jump(jump);
        // Recovery put the retained messages straight into the broker's tree, as the binary's does.
        recovered.retained.clear();
        broker.restore(now, recovered);
        self.broker = broker;
        Ok(())
    }

    /// A commit failed (disk full, EIO): hold the input's outputs, tell the broker.
    pub(super) fn suspend_storage(&mut self, outputs: Vec<Output>, error: &StorageError) -> Result<(), Violation> {
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
        let retry_at = self.now + RETRY_MS;
        self.log(format!(
            "=== storage suspended ({error}{}), holding {held_conns:?} ===",
            if error.is_disk_full() { ", disk full" } else { "" }
        ));
        self.counts.disk_full += 1;
        if let Some(disk) = self.disk.as_mut() {
            disk.storage.suspend();
        }
        self.suspension = Some(Suspension {
            held_conns,
            held_outputs,
            retry_at,
        });
        for output in passed {
            self.route_output(output)?;
        }
        self.broker_input(Input::StorageWritable(false))
    }

    /// The driver's retry (or the liveness phase began, when the disk works): snapshot the whole state, release
    /// what was held.
    pub(super) fn resume_storage_if_due(&mut self, force: bool) -> Result<(), Violation> {
        if !self
            .suspension
            .as_ref()
            .is_some_and(|s| force || self.now >= s.retry_at)
        {
            return Ok(());
        }
        let image = self.broker.image();
        if let Some(disk) = self.disk.as_mut() {
            if let Err(e) = disk.resume(&image) {
                if force {
                    return Err(Violation(format!("storage cannot resume on a working disk: {e}")));
                }
                self.log(format!("storage still suspended: {e}"));
                if let Some(s) = self.suspension.as_mut() {
                    s.retry_at = self.now + RETRY_MS;
                }
                return Ok(());
            }
        }
        let Some(suspension) = self.suspension.take() else {
            return Ok(());
        };
        // The snapshot holds the broker's deadlines, capped ones included.
        self.clock.caps_recorded = true;
        self.log("=== disk writable again: snapshot written, held output released ===".into());
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

/// The held PUBLISHes recovery shows admitted (their QoS 2 id is restored) although the model never saw them
/// acknowledged: those of `held` not in `forgotten`.
fn admitted_unseen_ids(held: &[PendingPublish], forgotten: &[PendingPublish]) -> Vec<usize> {
    let dead: BTreeSet<(usize, u16)> = forgotten.iter().map(|p| (p.client, p.publish.packet_id)).collect();
    (0..held.len())
        .filter(|i| !dead.contains(&(held[*i].client, held[*i].publish.packet_id)))
        .collect()
}

impl World {
    /// After a crash the disk says on which side of a blind admission (see `admission`) the broker was: a held
    /// PUBLISH it admitted unseen is routed in the model now (to the subscribers of its reading or of now, owed to
    /// none), and each retained topic the model could not pin down is pinned to what recovery restored, which
    /// `image_matches_model` has just found to be one of the values the model allows there.
    fn adopt_unseen_admissions(&mut self, recovered: &Image, held: &[PendingPublish], admitted: &[usize]) {
        // A blind RETAIN PUBLISH whose message recovery retains was admitted too, whatever its QoS.
        let retained_now = |p: &PendingPublish| {
            let restored = recovered.retained.get(&p.publish.topic);
            let clears = p.publish.payload.is_empty();
            p.blind
                && p.publish.retain
                && match (restored, clears) {
                    // A clear was admitted if the topic the model still has retained is empty now.
                    (None, true) => self.model.retained.contains_key(&p.publish.topic),
                    (Some(m), false) => p.id.is_some() && crate::model::message_id(&m.payload) == p.id,
                    _ => false,
                }
        };
        let mut admitted = admitted.to_vec();
        admitted.extend((0..held.len()).filter(|i| retained_now(&held[*i])));
        admitted.sort_unstable();
        admitted.dedup();
        // A blind QoS 1 one not shown admitted leaves no trace of its admission but its copies, which the model
        // cannot tell from other copies of the same message: it may have been admitted before the crash, its
        // PUBACK stuck behind the write-blocked connection (seed 2502: m1:143, admitted when c0's PUBACK 47 made
        // room, was in c0's recovered queue, and c0 got the copies queued after it).
        for (i, pending) in held.iter().enumerate() {
            if pending.blind && pending.publish.qos == QoS::AtLeastOnce && admitted.binary_search(&i).is_err() {
                self.route_maybe_admitted(pending);
            }
        }
        for i in admitted {
            let pending = &held[i];
            self.log(format!(
                "c{} {:?}: recovery shows held PUBLISH id={} admitted unseen",
                pending.client, pending.conn, pending.publish.packet_id
            ));
            let mut plan = self
                .model
                .plan_publish(Some(pending.client), &pending.publish, pending.id.clone());
            self.model.unpin(&mut plan);
            plan.make_optional(pending.plan.clone());
            self.model.apply_publish(plan);
            // Its QoS 2 id, restored, is the broker's again: a resend is a duplicate [MQTT-4.3.3-9] (the chosen
            // candidate model may have forgotten it with the other held PUBLISHes: seed 16881).
            let restored = recovered.sessions.values().any(|s| {
                s.client_id == self.clients[pending.client].client_id
                    && s.incoming_qos2.contains(&pending.publish.packet_id)
            });
            if pending.publish.qos == QoS::ExactlyOnce && restored {
                self.model.sessions[pending.client]
                    .qos2_pending
                    .insert(pending.publish.packet_id);
            }
        }
        let mut unsure: Vec<String> = self.model.retained_unsure.iter().cloned().collect();
        unsure.extend(
            held.iter()
                .filter(|p| p.blind && p.publish.retain)
                .map(|p| p.publish.topic.clone()),
        );
        for topic in unsure {
            // Only to a value the model allows there: a message published with RETAIN on this topic.
            match recovered
                .retained
                .get(&topic)
                .map(|m| crate::model::message_id(&m.payload))
            {
                Some(Some(id))
                    if self.model.ever_retained.contains(&id)
                        && self.model.messages.get(&id).is_some_and(|m| m.topic == topic) =>
                {
                    self.model.retained.insert(topic.clone(), id);
                }
                None if !self.model.retained.contains_key(&topic) => {}
                _ => {
                    // Still unsure (a blind one not resolved by recovery): so it stays.
                    self.model.retained_unsure.insert(topic);
                    continue;
                }
            }
            self.model.retained_unsure.remove(&topic);
        }
    }
}

/// Held PUBLISHes die unrouted with their connections when the broker crashes: a QoS 2 one's packet id is free
/// again, unless the broker may have held it as a duplicate of an id it kept (see `drop_held`).
pub(super) fn forget_held(model: &mut Model, held: &[PendingPublish]) {
    for pending in held {
        if pending.publish.qos == QoS::ExactlyOnce {
            if pending.qos2_maybe_held {
                model.qos2_unsure.insert((pending.client, pending.publish.packet_id));
            }
            model.forget_qos2(pending.client, pending.publish.packet_id);
        }
    }
}
