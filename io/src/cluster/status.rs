//! `mqtt-broker cluster status`: asks every node of the cluster, over its node-to-node port, for its view of the
//! Raft group (role, term, leader, commit and applied index; on the leader, each member's replicated index) and
//! prints one line per node and the lag of each follower behind the leader.
//!
//! The request is a hello of its own (magic `MQST`, version, the cluster id) on a fresh connection to a node's
//! peer port; the node answers one frame of text (`key=value` pairs) and closes. A node of another cluster, or a
//! node that is down, is reported as such. The peer port is the cluster's private network: the answer holds
//! nothing beyond what the nodes tell each other anyway.

use bytes::{BufMut, BytesMut};
use mqtt_cluster::NodeStatus;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const STATUS_MAGIC: &[u8; 4] = b"MQST";
const STATUS_VERSION: u8 = 1;
/// A status answer is a few hundred bytes; anything longer is not one.
const MAX_ANSWER: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(2);

/// The request frame: length, magic, version, cluster id length, cluster id.
pub fn encode_request(cluster_id: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_slice(STATUS_MAGIC);
    body.put_u8(STATUS_VERSION);
    body.put_u8(cluster_id.len().min(255) as u8);
    body.put_slice(cluster_id.as_bytes());
    let mut framed = Vec::with_capacity(4 + body.len());
    framed.put_u32(body.len() as u32);
    framed.put_slice(&body);
    framed
}

/// Whether a hello body is a status request, and for which cluster.
pub fn parse_request(body: &[u8]) -> Option<&str> {
    if body.len() < 6 || &body[..4] != STATUS_MAGIC || body[4] != STATUS_VERSION {
        return None;
    }
    let len = body[5] as usize;
    std::str::from_utf8(body.get(6..6 + len)?).ok()
}

/// The answer: one line of `key=value` pairs. `addresses` are the node-to-node addresses this node knows (its own
/// included), so that `cluster status` also finds members added at run time.
pub fn encode_answer(status: &NodeStatus, addresses: &[(u64, SocketAddr)]) -> Vec<u8> {
    let matched: Vec<String> = status.match_index.iter().map(|(id, m)| format!("{id}:{m}")).collect();
    let addresses: Vec<String> = addresses.iter().map(|(id, a)| format!("{id}@{a}")).collect();
    let text = format!(
        "id={} role={:?} term={} leader={} commit={} applied={} serving={} voters={} addresses={} match={}",
        status.id,
        status.role,
        status.term,
        status.leader.map_or("none".to_string(), |l| l.to_string()),
        status.commit,
        status.applied,
        status.serving,
        mqtt_cluster::members::join(&status.voters),
        addresses.join(","),
        matched.join(",")
    );
    let mut framed = Vec::with_capacity(4 + text.len());
    framed.put_u32(text.len() as u32);
    framed.put_slice(text.as_bytes());
    framed
}

/// Asks the node at `address`; its answer's pairs, or why there is none.
pub fn query(address: SocketAddr, cluster_id: &str) -> Result<BTreeMap<String, String>, String> {
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| format!("unreachable: {e}"))?;
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    stream
        .write_all(&encode_request(cluster_id))
        .map_err(|e| format!("request failed: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    if answer.len() < 4 {
        return Err("closed without an answer (another cluster, or not a node of this version)".into());
    }
    let len = u32::from_be_bytes([answer[0], answer[1], answer[2], answer[3]]) as usize;
    let text = answer
        .get(4..4 + len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or("a malformed answer")?;
    Ok(text
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The voters an answer names.
pub fn voters(answer: &BTreeMap<String, String>) -> Vec<u64> {
    let list = answer.get("voters").map_or("", String::as_str);
    list.split(',').filter_map(|v| v.parse().ok()).collect()
}

/// The node-to-node addresses an answer names.
pub fn addresses(answer: &BTreeMap<String, String>) -> Vec<(u64, SocketAddr)> {
    let list = answer.get("addresses").map_or("", String::as_str);
    list.split(',')
        .filter_map(|pair| pair.split_once('@'))
        .filter_map(|(id, a)| Some((id.parse().ok()?, a.parse().ok()?)))
        .collect()
}

/// The report for every member, as `cluster status` prints it: the configured members first, then any member
/// their answers name (added at run time); a configured node that is no longer a voter is marked so.
pub fn report(cluster_id: &str, members: &[(u64, SocketAddr)]) -> String {
    let mut known: BTreeMap<u64, SocketAddr> = members.iter().copied().collect();
    let mut asked = std::collections::BTreeSet::new();
    let mut lines = Vec::new();
    let mut leader_view: Option<BTreeMap<String, String>> = None;
    while let Some((id, address)) = known.iter().find(|(id, _)| !asked.contains(*id)).map(|(i, a)| (*i, *a)) {
        asked.insert(id);
        let (id, address) = (&id, &address);
        let mut out = String::new();
        match query(*address, cluster_id) {
            Ok(answer) => {
                for (peer, address) in addresses(&answer) {
                    known.entry(peer).or_insert(address);
                }
                let get = |k: &str| answer.get(k).map_or("?", String::as_str);
                out.push_str(&format!(
                    "node {id} at {address}: {} term {} leader {} commit {} applied {}{}\n",
                    get("role"),
                    get("term"),
                    get("leader"),
                    get("commit"),
                    get("applied"),
                    if get("serving") == "true" {
                        " (serving clients)"
                    } else {
                        ""
                    }
                ));
                if get("role") == "Leader" {
                    leader_view = Some(answer);
                }
            }
            Err(why) => out.push_str(&format!("node {id} at {address}: {why}\n")),
        }
        lines.push(out);
    }
    let mut out = format!("cluster {cluster_id:?}: {} nodes asked\n", lines.len());
    out.extend(lines);
    match leader_view {
        Some(view) => {
            out.push_str(&format!("voters: {}\n", view.get("voters").map_or("?", String::as_str)));
            let commit: u64 = view.get("commit").and_then(|c| c.parse().ok()).unwrap_or(0);
            out.push_str(&format!(
                "leader: node {} in term {}\n",
                view.get("id").map_or("?", String::as_str),
                view.get("term").map_or("?", String::as_str)
            ));
            for pair in view
                .get("match")
                .map_or("", String::as_str)
                .split(',')
                .filter(|p| !p.is_empty())
            {
                if let Some((id, matched)) = pair.split_once(':') {
                    let matched: u64 = matched.parse().unwrap_or(0);
                    out.push_str(&format!(
                        "  node {id}: replicated through {matched}, lag {} entries behind the commit\n",
                        commit.saturating_sub(matched)
                    ));
                }
            }
        }
        None => out.push_str("leader: none reachable (an election may be under way, or a majority is down)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_parses_back_and_other_hellos_are_not_requests() {
        let framed = encode_request("demo");
        assert_eq!(parse_request(&framed[4..]), Some("demo"));
        assert_eq!(parse_request(b"MQCN\x01"), None);
        assert_eq!(parse_request(b"MQST\x01\x09ab"), None, "length beyond the body");
    }
}
