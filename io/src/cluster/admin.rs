//! `mqtt-broker cluster add-node` / `remove-node`: membership changes asked over the node-to-node port, as
//! `cluster status` asks for status.
//!
//! The request is a hello of its own (magic `MQMC`, version, the cluster id, the change) on a fresh connection to
//! the leader's peer port; the leader proposes the change (see `mqtt_cluster::members`) and answers one frame of
//! text: `ok index=N` (the index of the proposed entry) or `error <why>`, then closes. The command finds the
//! leader with status requests first, and then waits until a member reports the change applied.

use super::status;
use bytes::{Buf, BufMut, BytesMut};
use mqtt_cluster::{members, MemberChange};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const MEMBER_MAGIC: &[u8; 4] = b"MQMC";
const MEMBER_VERSION: u8 = 1;
const OP_ADD: u8 = 1;
const OP_REMOVE: u8 = 2;
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long the command waits for the change to be applied (a removed leader's successor must be elected first).
const APPLY_WAIT: Duration = Duration::from_secs(15);
const MAX_ANSWER: u64 = 4096;

/// The request frame: length, magic, version, cluster id length, cluster id, operation, node id, address length,
/// address.
pub fn encode_request(cluster_id: &str, change: &MemberChange) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_slice(MEMBER_MAGIC);
    body.put_u8(MEMBER_VERSION);
    body.put_u8(cluster_id.len().min(255) as u8);
    body.put_slice(&cluster_id.as_bytes()[..cluster_id.len().min(255)]);
    let address = match change {
        MemberChange::Add { address, .. } => {
            body.put_u8(OP_ADD);
            address.as_str()
        }
        MemberChange::Remove { .. } => {
            body.put_u8(OP_REMOVE);
            ""
        }
    };
    body.put_u64(change.id());
    let address = &address.as_bytes()[..address.len().min(members::MAX_ADDRESS_LEN)];
    body.put_u8(address.len() as u8);
    body.put_slice(address);
    let mut framed = Vec::with_capacity(4 + body.len());
    framed.put_u32(body.len() as u32);
    framed.put_slice(&body);
    framed
}

/// `None` if the hello body is not a membership request; else the cluster it names and the change, or why it is
/// malformed.
pub fn parse_request(body: &[u8]) -> Option<Result<(String, MemberChange), String>> {
    if body.len() < 5 || &body[..4] != MEMBER_MAGIC {
        return None;
    }
    Some(parse_body(&body[4..]))
}

fn parse_body(mut b: &[u8]) -> Result<(String, MemberChange), String> {
    let malformed = || "malformed membership request".to_string();
    let version = b.get_u8();
    if version != MEMBER_VERSION {
        return Err(format!("unknown membership request version {version}"));
    }
    let len = *b.first().ok_or_else(malformed)? as usize;
    b.advance(1);
    let cluster = std::str::from_utf8(b.get(..len).ok_or_else(malformed)?).map_err(|_| malformed())?;
    b.advance(len);
    if b.len() < 1 + 8 + 1 {
        return Err(malformed());
    }
    let op = b.get_u8();
    let id = b.get_u64();
    let len = b.get_u8() as usize;
    if b.len() != len {
        return Err(malformed());
    }
    let address = std::str::from_utf8(b).map_err(|_| malformed())?.to_string();
    let change = match op {
        OP_ADD => MemberChange::Add { id, address },
        OP_REMOVE => MemberChange::Remove { id },
        other => return Err(format!("unknown membership operation {other}")),
    };
    Ok((cluster.to_string(), change))
}

/// The answer frame.
pub fn encode_answer(result: &Result<u64, String>) -> Vec<u8> {
    let text = match result {
        Ok(index) => format!("ok index={index}"),
        Err(why) => format!("error {why}"),
    };
    let mut framed = Vec::with_capacity(4 + text.len());
    framed.put_u32(text.len() as u32);
    framed.put_slice(text.as_bytes());
    framed
}

/// Sends the request to the node at `address`: the index of the proposed entry, or why not.
fn ask(address: SocketAddr, cluster_id: &str, change: &MemberChange) -> Result<u64, String> {
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| format!("unreachable: {e}"))?;
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    stream
        .write_all(&encode_request(cluster_id, change))
        .map_err(|e| format!("request failed: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    let text = answer
        .get(4..)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or("closed without an answer (another cluster, or not a node of this version)")?;
    if let Some(index) = text.strip_prefix("ok index=") {
        return index.parse().map_err(|_| format!("a malformed answer: {text}"));
    }
    Err(text.strip_prefix("error ").unwrap_or(text).to_string())
}

/// Every node that answers a status request, by id, with its answer: the configured members and every member
/// their answers name (added at run time).
fn survey(cluster_id: &str, members: &[(u64, SocketAddr)]) -> BTreeMap<u64, (SocketAddr, BTreeMap<String, String>)> {
    let mut known: BTreeMap<u64, SocketAddr> = members.iter().copied().collect();
    let mut answers = BTreeMap::new();
    let mut asked = std::collections::BTreeSet::new();
    while let Some((id, address)) = known.iter().find(|(id, _)| !asked.contains(*id)).map(|(i, a)| (*i, *a)) {
        asked.insert(id);
        let Ok(answer) = status::query(address, cluster_id) else {
            continue;
        };
        for (peer, address) in status::addresses(&answer) {
            known.entry(peer).or_insert(address);
        }
        answers.insert(id, (address, answer));
    }
    answers
}

/// Runs `cluster add-node` / `remove-node`: finds the leader, asks it, waits until the change is applied. The
/// text to print, or the error.
pub fn run(cluster_id: &str, members: &[(u64, SocketAddr)], change: &MemberChange) -> Result<String, String> {
    let answers = survey(cluster_id, members);
    let leader = answers
        .iter()
        .find(|(_, (_, a))| a.get("role").map(String::as_str) == Some("Leader"))
        .map(|(id, (address, _))| (*id, *address))
        .ok_or("no leader reachable (an election may be under way, or a majority is down); nothing changed")?;
    let index = ask(leader.1, cluster_id, change).map_err(|why| format!("node {} refused: {why}", leader.0))?;
    let deadline = Instant::now() + APPLY_WAIT;
    let mut all: Vec<(u64, SocketAddr)> = members.to_vec();
    all.extend(answers.iter().map(|(id, (address, _))| (*id, *address)));
    while Instant::now() < deadline {
        for (id, (_, answer)) in survey(cluster_id, &all) {
            let applied: u64 = answer.get("applied").and_then(|a| a.parse().ok()).unwrap_or(0);
            let voters = status::voters(&answer);
            let done = match change {
                MemberChange::Add { id: new, .. } => voters.contains(new),
                MemberChange::Remove { id: gone } => !voters.contains(gone) && id != *gone,
            };
            if done && applied >= index {
                let what = match change {
                    MemberChange::Add { id, address } => format!("node {id} ({address}) added"),
                    MemberChange::Remove { id } => format!("node {id} removed"),
                };
                return Ok(format!(
                    "{what}: configuration change at index {index} applied (seen on node {id}); voters now {}\n",
                    members::join(&voters)
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "node {} proposed the change at index {index}, but no member reported it applied within {APPLY_WAIT:?} \
         (is a majority up?); check `cluster status`",
        leader.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_malformed_ones_are_refused_by_name() {
        let add = MemberChange::Add {
            id: 4,
            address: "127.0.0.1:7004".into(),
        };
        for change in [add, MemberChange::Remove { id: 2 }] {
            let framed = encode_request("demo", &change);
            assert_eq!(parse_request(&framed[4..]), Some(Ok(("demo".to_string(), change))));
        }
        assert_eq!(parse_request(b"MQST\x01\x04demo"), None, "a status request is not one");
        let framed = encode_request("demo", &MemberChange::Remove { id: 2 });
        let cut = &framed[4..framed.len() - 3];
        assert_eq!(parse_request(cut), Some(Err("malformed membership request".into())));
        let mut bad_op = framed[4..].to_vec();
        bad_op[10] = 9;
        assert!(matches!(parse_request(&bad_op), Some(Err(e)) if e.contains("operation 9")));
    }
}
