//! The fault schedule of the fault phase: crashes (between inputs, or right after a write before its sync),
//! partitions (an isolated node or leader, one-way links, a minority split), garbage peer messages, and clients
//! dropping their connections.

use super::{World, CLUSTER_ID};
use bytes::Bytes;
use mqtt_cluster::{ClusterEvent, NodeInput, NodeOutput};
use mqtt_core::broker::Input;
use rand::Rng;

impl World {
    pub(super) fn inject_faults(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        if self.rng.gen_bool(self.opts.crash_rate) {
            // Half the crashes strike the leader: that is where the interesting failovers are.
            let i = match self.leader_index() {
                Some(l) if self.rng.gen_bool(0.5) => l,
                _ => self.rng.gen_range(0..n),
            };
            if self.nodes[i].node.is_some() {
                if self.rng.gen_bool(self.opts.mid_output_crash_share) {
                    let after = self.rng.gen_range(0..4);
                    self.nodes[i].crash_after_writes = Some(after);
                } else {
                    self.crash(i, "between inputs");
                }
            }
        }
        if self.partition_until.is_some_and(|t| t <= self.now) {
            self.net.heal();
            self.partition_until = None;
            self.line("partition healed".into());
        }
        if self.partition_until.is_none() && self.rng.gen_bool(self.opts.partition_rate) {
            self.partition();
        }
        if self.rng.gen_bool(self.opts.garbage_rate) {
            self.garbage()?;
        }
        if self.rng.gen_bool(self.opts.client_drop_rate) && !self.conns.is_empty() {
            let k = self.rng.gen_range(0..self.conns.len());
            if let Some((&conn, &(i, _))) = self.conns.iter().nth(k) {
                self.close_client(conn);
                self.input(i, NodeInput::Client(Input::Closed { conn }))?;
            }
        }
        Ok(())
    }

    fn partition(&mut self) {
        let n = self.nodes.len() as u64;
        let ids: Vec<u64> = (1..=n).collect();
        let leader = self.leader_index().map(|i| i as u64 + 1);
        let victim = match leader {
            Some(l) if self.rng.gen_bool(0.5) => l,
            _ => self.rng.gen_range(1..=n),
        };
        let others: Vec<u64> = ids.iter().copied().filter(|x| *x != victim).collect();
        let kind = self.rng.gen_range(0..4);
        let what = match kind {
            0 => {
                self.net.split(&[victim], &others);
                format!(
                    "n{victim} isolated{}",
                    if Some(victim) == leader { " (the leader)" } else { "" }
                )
            }
            1 => {
                for o in &others {
                    self.net.cut(victim, *o);
                }
                format!("n{victim} cannot send (one-way)")
            }
            2 => {
                for o in &others {
                    self.net.cut(*o, victim);
                }
                format!("n{victim} cannot receive (one-way)")
            }
            _ => {
                // A minority with the victim against a majority.
                let minority_size = (ids.len() - 1) / 2;
                let mut minority = vec![victim];
                minority.extend(others.iter().copied().take(minority_size.saturating_sub(1)));
                let majority: Vec<u64> = ids.iter().copied().filter(|x| !minority.contains(x)).collect();
                self.net.split(&minority, &majority);
                format!("split {minority:?} | {majority:?}")
            }
        };
        self.break_cut_streams();
        let duration = self.rng.gen_range(100..3_000);
        self.partition_until = Some(self.now + duration);
        self.counts.partitions += 1;
        self.line(format!("partition for {duration} ms: {what}"));
    }

    /// A peer message that is not one: it must be refused, and nothing applied.
    fn garbage(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        let i = self.rng.gen_range(0..n);
        let from = (i + 1) % n + 1;
        let data: Vec<u8> = match self.rng.gen_range(0..3) {
            0 => (0..self.rng.gen_range(0..40)).map(|_| self.rng.gen()).collect(),
            1 => {
                let mut m = mqtt_cluster::wire::PEER_MAGIC.to_vec();
                m.push(mqtt_cluster::wire::PEER_VERSION);
                m.extend_from_slice(&(CLUSTER_ID + 1).to_be_bytes());
                m
            }
            _ => {
                let mut m = mqtt_cluster::wire::PEER_MAGIC.to_vec();
                m.push(mqtt_cluster::wire::PEER_VERSION);
                m.extend_from_slice(&CLUSTER_ID.to_be_bytes());
                m.extend_from_slice(&[0xff; 9]);
                m
            }
        };
        if self.nodes[i].node.is_none() {
            return Ok(());
        }
        self.counts.garbage += 1;
        self.line(format!(
            "garbage peer message ({} bytes) to n{} from n{from}",
            data.len(),
            i + 1
        ));
        let before = self.counts.refused;
        self.input(
            i,
            NodeInput::Peer {
                from: from as u64,
                message: &Bytes::from(data),
            },
        )?;
        let queued = self.nodes[i]
            .pending
            .iter()
            .any(|o| matches!(o, NodeOutput::Event(ClusterEvent::PeerRefused { .. })));
        // Refused at once; or the refusal waits in the driver's queue behind a sync; or the node crashed meanwhile.
        if self.counts.refused != before + 1 && !queued && self.nodes[i].node.is_some() {
            return Err(format!("n{} did not refuse a garbage peer message", i + 1));
        }
        Ok(())
    }
}
