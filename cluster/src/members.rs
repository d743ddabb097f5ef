//! Membership changes at run time: one voter added or removed per Raft configuration change (raft-rs's
//! `ConfChangeV2` with a single change, not a joint one: one voter at a time keeps every old majority and every new
//! one overlapping, Raft thesis 4.1).
//!
//! The change travels as an `EntryConfChangeV2` entry; its context carries the added node's node-to-node address
//! (text), so every member learns where to reach it from the log. A change takes effect on each node when the entry
//! is applied (raft-rs's rule); the configuration then lives in the log and in every snapshot's `ConfState`, so a
//! restarted node recovers the current membership from its data directory (see `replay`).

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType};
use std::fmt;

/// The largest address a change may carry (a host name and port fit easily).
pub const MAX_ADDRESS_LEN: usize = 255;

/// An operator's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Add node `id` as a voter; other nodes reach it at `address`.
    Add {
        id: u64,
        address: String,
    },
    Remove {
        id: u64,
    },
}

/// Why a change was not proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChangeError {
    /// Only the leader proposes; `leader` is the one this node knows of.
    NotLeader {
        leader: Option<u64>,
    },
    AlreadyMember(u64),
    NotMember {
        id: u64,
        members: Vec<u64>,
    },
    /// The cluster would have no voter left.
    LastVoter(u64),
    /// An earlier change is not applied yet (one change at a time).
    Pending,
    /// Id 0 is raft-rs's "nobody"; an address must be non-empty and bounded.
    BadRequest(String),
    /// raft-rs dropped the proposal.
    Dropped(String),
}

impl fmt::Display for MemberChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberChangeError::NotLeader { leader: Some(l) } => write!(f, "not the leader (node {l} leads)"),
            MemberChangeError::NotLeader { leader: None } => write!(f, "not the leader (no leader known)"),
            MemberChangeError::AlreadyMember(id) => write!(f, "node {id} is a member already"),
            MemberChangeError::NotMember { id, members } => {
                write!(f, "node {id} is not a member (members: {})", join(members))
            }
            MemberChangeError::LastVoter(id) => write!(f, "node {id} is the last voter; a cluster needs one"),
            MemberChangeError::Pending => {
                write!(
                    f,
                    "a membership change is pending (not applied yet); try again when it is"
                )
            }
            MemberChangeError::BadRequest(why) => write!(f, "bad request: {why}"),
            MemberChangeError::Dropped(why) => write!(f, "proposal dropped: {why}"),
        }
    }
}

impl std::error::Error for MemberChangeError {}

/// Ids as `1,2,3`.
pub fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

impl MemberChange {
    pub fn id(&self) -> u64 {
        match self {
            MemberChange::Add { id, .. } | MemberChange::Remove { id } => *id,
        }
    }

    /// Checks the change against the current voters.
    pub fn check(&self, voters: &[u64]) -> Result<(), MemberChangeError> {
        let id = self.id();
        if id == 0 {
            return Err(MemberChangeError::BadRequest("node id 0 is reserved".into()));
        }
        match self {
            MemberChange::Add { address, .. } => {
                if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
                    return Err(MemberChangeError::BadRequest(format!(
                        "an address of 1 to {MAX_ADDRESS_LEN} bytes is needed"
                    )));
                }
                if voters.contains(&id) {
                    return Err(MemberChangeError::AlreadyMember(id));
                }
            }
            MemberChange::Remove { .. } => {
                if !voters.contains(&id) {
                    return Err(MemberChangeError::NotMember {
                        id,
                        members: voters.to_vec(),
                    });
                }
                if voters.len() == 1 {
                    return Err(MemberChangeError::LastVoter(id));
                }
            }
        }
        Ok(())
    }

    /// The conf change and the entry context raft-rs proposes.
    pub fn to_conf_change(&self) -> (ConfChangeV2, Vec<u8>) {
        let (change_type, context) = match self {
            MemberChange::Add { address, .. } => (ConfChangeType::AddNode, address.as_bytes().to_vec()),
            MemberChange::Remove { .. } => (ConfChangeType::RemoveNode, Vec::new()),
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = self.id();
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        (cc, context)
    }
}

/// A committed configuration-change entry, decoded: the conf change and the change it makes, if it is one this
/// version proposes (a single add or remove).
pub fn decode_entry(entry: &Entry) -> Option<(ConfChangeV2, MemberChange)> {
    if entry.get_entry_type() != EntryType::EntryConfChangeV2 {
        return None;
    }
    let cc: ConfChangeV2 = protobuf::Message::parse_from_bytes(&entry.data).ok()?;
    let [single] = cc.get_changes() else {
        return None;
    };
    let change = match single.get_change_type() {
        ConfChangeType::AddNode => MemberChange::Add {
            id: single.node_id,
            address: String::from_utf8_lossy(&entry.context).into_owned(),
        },
        ConfChangeType::RemoveNode => MemberChange::Remove { id: single.node_id },
        ConfChangeType::AddLearnerNode => return None,
    };
    Some((cc, change))
}

/// Applies a change to a configuration without raft-rs (at start-up, before the `RawNode` exists; raft-rs gives
/// the same result for a single add or remove).
pub fn replay(conf: &mut ConfState, change: &MemberChange) {
    match change {
        MemberChange::Add { id, .. } => {
            conf.learners.retain(|l| l != id);
            if !conf.voters.contains(id) {
                conf.voters.push(*id);
                conf.voters.sort_unstable();
            }
        }
        MemberChange::Remove { id } => {
            conf.voters.retain(|v| v != id);
            conf.learners.retain(|l| l != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_of(change: &MemberChange) -> Entry {
        let (cc, context) = change.to_conf_change();
        let mut entry = Entry::default();
        entry.set_entry_type(EntryType::EntryConfChangeV2);
        entry.data = protobuf::Message::write_to_bytes(&cc).expect("encodes").into();
        entry.context = context.into();
        entry
    }

    #[test]
    fn a_change_round_trips_through_an_entry_and_replays_on_a_conf_state() {
        let add = MemberChange::Add {
            id: 4,
            address: "127.0.0.1:7004".into(),
        };
        let remove = MemberChange::Remove { id: 1 };
        let mut conf = ConfState::from((vec![1, 2, 3], Vec::<u64>::new()));
        for change in [&add, &remove] {
            let (_, decoded) = decode_entry(&entry_of(change)).expect("a member change");
            assert_eq!(&decoded, change);
            replay(&mut conf, &decoded);
        }
        assert_eq!(conf.voters, vec![2, 3, 4]);
        assert!(decode_entry(&Entry::default()).is_none(), "a normal entry is none");
    }

    #[test]
    fn bad_changes_get_a_typed_error() {
        let voters = [1, 2, 3];
        let add = |id: u64, address: &str| MemberChange::Add {
            id,
            address: address.into(),
        };
        assert_eq!(add(2, "a:1").check(&voters), Err(MemberChangeError::AlreadyMember(2)));
        assert!(matches!(
            add(0, "a:1").check(&voters),
            Err(MemberChangeError::BadRequest(_))
        ));
        assert!(matches!(
            add(4, "").check(&voters),
            Err(MemberChangeError::BadRequest(_))
        ));
        assert_eq!(add(4, "a:1").check(&voters), Ok(()));
        assert_eq!(
            MemberChange::Remove { id: 7 }.check(&voters),
            Err(MemberChangeError::NotMember {
                id: 7,
                members: vec![1, 2, 3]
            })
        );
        assert_eq!(
            MemberChange::Remove { id: 1 }.check(&[1]),
            Err(MemberChangeError::LastVoter(1))
        );
        assert_eq!(MemberChange::Remove { id: 1 }.check(&voters), Ok(()));
        assert!(MemberChangeError::Pending.to_string().contains("pending"));
    }
}
