//! The links over loopback: delivery in order (small and large messages), hello checks, oversized frames,
//! reconnection with back-off, bounded queues.

use super::*;
use crate::test_ports::{ephemeral_range, free_addr};
use mio::{Events, Poll};

const MAX: usize = 1 << 20;

struct Node {
    poll: Poll,
    transport: PeerTransport,
    events: Vec<PeerEvent>,
}

/// Picks a free port for each node id first, so every node knows every other's address.
fn cluster(ids: &[u64], cluster_id: &str) -> Vec<Node> {
    let members: Vec<(u64, SocketAddr)> = ids.iter().map(|&id| (id, free_addr())).collect();
    members
        .iter()
        .map(|&(id, listen)| node(id, listen, cluster_id, &members))
        .collect()
}

fn node(id: u64, listen: SocketAddr, cluster_id: &str, members: &[(u64, SocketAddr)]) -> Node {
    let poll = Poll::new().expect("poll");
    let config = TransportConfig {
        node_id: id,
        cluster_id: cluster_id.to_string(),
        peers: members.iter().copied().filter(|(p, _)| *p != id).collect(),
        listen,
        max_message: MAX,
        token_base: 1 << 20,
    };
    let transport = PeerTransport::bind(poll.registry(), config, Instant::now()).expect("transport");
    Node {
        poll,
        transport,
        events: Vec::new(),
    }
}

/// Runs every node's loop once (a short poll, events, timers).
fn turn(nodes: &mut [Node]) {
    let mut events = Events::with_capacity(64);
    for n in nodes.iter_mut() {
        n.poll.poll(&mut events, Some(Duration::from_millis(5))).expect("poll");
        for e in events.iter() {
            let readable = e.is_readable() || e.is_read_closed() || e.is_error();
            n.transport.handle_event(
                n.poll.registry(),
                e.token(),
                readable,
                e.is_writable(),
                Instant::now(),
                &mut n.events,
            );
        }
        n.transport.on_timers(n.poll.registry(), Instant::now(), &mut n.events);
        n.transport.read_more(n.poll.registry(), &mut n.events);
    }
}

fn run_until(nodes: &mut [Node], mut done: impl FnMut(&[Node]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(nodes) {
        assert!(Instant::now() < deadline, "timed out");
        turn(nodes);
    }
}

fn messages(n: &Node) -> Vec<(u64, Vec<u8>)> {
    n.events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Message { from, data } => Some((*from, data.to_vec())),
            PeerEvent::Unreachable { .. } | PeerEvent::StatusRequest { .. } | PeerEvent::MemberRequest { .. } => None,
        })
        .collect()
}

fn send(n: &mut Node, to: u64, data: &[u8]) -> bool {
    let sent = n.transport.send(to, data);
    n.transport.flush(n.poll.registry(), Instant::now(), &mut n.events);
    sent
}

#[test]
fn messages_arrive_whole_in_order_with_the_senders_id() {
    let mut nodes = cluster(&[1, 2, 3], "demo");
    run_until(&mut nodes, |n| {
        n[0].transport.is_connected(2) && n[1].transport.is_connected(1) && n[2].transport.is_connected(1)
    });
    let big: Vec<u8> = (0..MAX).map(|i| (i % 251) as u8).collect();
    for i in 0..100u8 {
        assert!(send(&mut nodes[0], 2, &[i; 3]));
    }
    assert!(send(&mut nodes[0], 2, &big));
    assert!(send(&mut nodes[1], 1, b"back"));
    assert!(send(&mut nodes[2], 1, b"from three"));
    run_until(&mut nodes, |n| {
        messages(&n[1]).len() == 101 && messages(&n[0]).len() == 2
    });
    let got = messages(&nodes[1]);
    for (i, (from, data)) in got[..100].iter().enumerate() {
        assert_eq!((*from, data.as_slice()), (1, &[i as u8; 3][..]));
    }
    assert_eq!(got[100], (1, big));
    let mut at_one = messages(&nodes[0]);
    at_one.sort();
    assert_eq!(at_one, [(2, b"back".to_vec()), (3, b"from three".to_vec())]);
}

#[test]
fn a_message_over_the_bound_or_to_a_stranger_is_not_sent() {
    let mut nodes = cluster(&[1, 2, 3], "demo");
    assert!(!send(&mut nodes[0], 2, &vec![0; MAX + 1]));
    assert!(!send(&mut nodes[0], 9, b"nobody"), "not a member");
}

/// A raw client that writes `bytes` to node 1 (of members 1, 2, 3, the others not running); returns whether node 1
/// closed the connection within a second, and the messages node 1 handed up.
fn raw_session(bytes: &[u8]) -> (bool, Vec<PeerEvent>) {
    let members = [(1, free_addr()), (2, free_addr()), (3, free_addr())];
    let mut nodes = vec![node(1, members[0].1, "demo", &members[..])];
    let mut raw = std::net::TcpStream::connect(nodes[0].transport.local_addr()).expect("connect");
    raw.write_all(bytes).expect("write");
    raw.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut closed = false;
    while Instant::now() < deadline && !closed {
        turn(&mut nodes);
        let mut b = [0u8; 16];
        closed = match raw.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
    }
    let events = std::mem::take(&mut nodes[0].events)
        .into_iter()
        .filter(|e| matches!(e, PeerEvent::Message { .. }))
        .collect();
    (closed, events)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn hello_then(hello: Bytes, then: &[u8]) -> Vec<u8> {
    let mut out = hello.to_vec();
    out.extend_from_slice(then);
    out
}

#[test]
fn a_node_of_another_cluster_is_dropped_and_nothing_it_sends_is_delivered() {
    let (closed, events) = raw_session(&hello_then(encode_hello(2, "other"), &framed(b"vote for me")));
    assert!(closed && events.is_empty(), "{closed} {events:?}");
    // The same bytes with the right cluster id are delivered, and the connection stays.
    let (closed, events) = raw_session(&hello_then(encode_hello(2, "demo"), &framed(b"vote for me")));
    assert!(!closed);
    assert_eq!(
        events,
        [PeerEvent::Message {
            from: 2,
            data: Bytes::from_static(b"vote for me")
        }]
    );
}

#[test]
fn bad_hellos_and_oversized_frames_drop_the_connection() {
    let cases = [
        ("not a member", hello_then(encode_hello(7, "demo"), &framed(b"x"))),
        ("itself", hello_then(encode_hello(1, "demo"), &framed(b"x"))),
        ("not a hello", framed(b"GET / HTTP/1.1\r\n")),
        ("too long for a hello", ((MAX_HELLO + 1) as u32).to_be_bytes().to_vec()),
        (
            "a message frame over the bound",
            hello_then(encode_hello(2, "demo"), &((MAX + 1) as u32).to_be_bytes()),
        ),
    ];
    for (what, bytes) in cases {
        let (closed, events) = raw_session(&bytes);
        assert!(closed && events.is_empty(), "{what}: closed {closed}, {events:?}");
    }
}

#[test]
fn an_unreachable_peer_is_reported_once_and_redialled_until_it_listens() {
    let members = [(1, free_addr()), (2, free_addr())];
    let mut nodes = vec![node(1, members[0].1, "demo", &members[..])];
    assert!(send(&mut nodes[0], 2, b"queued while down"));
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(400) {
        turn(&mut nodes);
    }
    let unreachable = nodes[0]
        .events
        .iter()
        .filter(|e| **e == PeerEvent::Unreachable { peer: 2 })
        .count();
    assert_eq!(unreachable, 1, "one report per outage: {:?}", nodes[0].events);
    // Node 2 starts listening: the link comes up after the back-off and the queued message is delivered.
    nodes.push(node(2, members[1].1, "demo", &members[..]));
    run_until(&mut nodes, |n| !messages(&n[1]).is_empty());
    assert_eq!(messages(&nodes[1]), [(1, b"queued while down".to_vec())]);
}

#[test]
fn the_queue_to_a_dead_peer_is_bounded() {
    let members = [(1, free_addr()), (2, free_addr())];
    let mut n = node(1, members[0].1, "demo", &members[..]);
    let sent = (0..MAX_QUEUED_MESSAGES + 10).filter(|_| send(&mut n, 2, b"m")).count();
    assert_eq!(sent, MAX_QUEUED_MESSAGES);
    assert_eq!(n.transport.dropped(2), 10);
}

#[test]
fn a_relayed_connections_close_is_queued_beyond_the_bound() {
    let members = [(1, free_addr()), (2, free_addr())];
    let mut n = node(1, members[0].1, "demo", &members[..]);
    let sent = (0..MAX_QUEUED_MESSAGES + 1).filter(|_| send(&mut n, 2, b"m")).count();
    assert_eq!(sent, MAX_QUEUED_MESSAGES);
    assert!(n.transport.send_notice(2, b"close"));
    assert_eq!(
        n.transport.dropped(2),
        1,
        "only the ordinary message beyond the bound was dropped"
    );
    assert!(!n.transport.send_notice(9, b"close"), "not a member");
}

#[test]
fn a_restarted_peer_is_redialled_and_its_new_connection_replaces_the_old() {
    let mut nodes = cluster(&[1, 2, 3], "demo");
    run_until(&mut nodes, |n| {
        n[0].transport.is_connected(2) && n[1].transport.is_connected(1)
    });
    let members: Vec<(u64, SocketAddr)> = [1, 2, 3]
        .iter()
        .zip(&nodes)
        .map(|(&id, n)| (id, n.transport.local_addr()))
        .collect();
    // Node 2 dies and comes back on the same address.
    nodes.remove(1);
    run_until(&mut nodes, |n| !n[0].transport.is_connected(2));
    nodes.insert(1, node(2, members[1].1, "demo", &members));
    run_until(&mut nodes, |n| {
        n[0].transport.is_connected(2) && n[1].transport.is_connected(1)
    });
    assert!(send(&mut nodes[0], 2, b"after restart"));
    assert!(send(&mut nodes[1], 1, b"from the new two"));
    run_until(&mut nodes, |n| {
        !messages(&n[1]).is_empty() && messages(&n[0]).iter().any(|(_, d)| d == b"from the new two")
    });
    assert_eq!(messages(&nodes[1]), [(1, b"after restart".to_vec())]);
}

/// A peer that sends faster than the node handles its messages: each readiness turn hands up at most
/// `READ_PER_TURN` (and the frame it completes), the rest waits in the kernel for the next turn (`read_more`), so
/// a node never holds a fast sender's whole burst at once (a follower relaying 40 MiB of client PUBLISHes made
/// its leader hold them all), and every message still arrives whole and in order.
#[test]
fn a_fast_peer_is_read_at_most_a_bounded_amount_per_turn() {
    const FRAME: usize = 64 * 1024;
    const FRAMES: usize = 512;
    let members = [(1, free_addr()), (2, free_addr()), (3, free_addr())];
    let mut node = node(1, members[0].1, "demo", &members[..]);
    let mut raw = std::net::TcpStream::connect(node.transport.local_addr()).expect("connect");
    let sender = std::thread::spawn(move || {
        raw.write_all(&encode_hello(2, "demo")).expect("hello");
        for i in 0..FRAMES {
            let mut body = vec![(i % 251) as u8; FRAME];
            body[..4].copy_from_slice(&(i as u32).to_be_bytes());
            raw.write_all(&framed(&body)).expect("frame");
        }
        raw
    });
    let mut received = Vec::new();
    let mut largest_turn = 0;
    let mut turns_left_unfinished = 0;
    let take = |node: &mut Node, received: &mut Vec<u32>| {
        let mut bytes = 0;
        for event in std::mem::take(&mut node.events) {
            if let PeerEvent::Message { from, data } = event {
                assert_eq!((from, data.len()), (2, FRAME));
                received.push(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                bytes += data.len();
            }
        }
        bytes
    };
    let mut events = Events::with_capacity(64);
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < FRAMES {
        assert!(
            Instant::now() < deadline,
            "timed out with {} of {FRAMES}",
            received.len()
        );
        // The node is busy elsewhere meanwhile: the sender fills the socket's buffers.
        std::thread::sleep(Duration::from_millis(2));
        let timeout = Some(Duration::from_millis(if node.transport.has_unfinished_reads() {
            0
        } else {
            5
        }));
        node.poll.poll(&mut events, timeout).expect("poll");
        for e in events.iter() {
            let readable = e.is_readable() || e.is_read_closed() || e.is_error();
            let registry = node.poll.registry();
            node.transport.handle_event(
                registry,
                e.token(),
                readable,
                e.is_writable(),
                Instant::now(),
                &mut node.events,
            );
            largest_turn = largest_turn.max(take(&mut node, &mut received));
        }
        turns_left_unfinished += usize::from(node.transport.has_unfinished_reads());
        node.transport.read_more(node.poll.registry(), &mut node.events);
        largest_turn = largest_turn.max(take(&mut node, &mut received));
    }
    drop(sender.join().expect("sender"));
    assert_eq!(received, (0..FRAMES as u32).collect::<Vec<_>>(), "whole and in order");
    assert!(
        largest_turn <= READ_PER_TURN + FRAME,
        "one turn handed up {largest_turn} bytes, over {READ_PER_TURN} and a frame"
    );
    assert!(
        turns_left_unfinished > 0,
        "the sender never got ahead of a turn: the bound was not exercised"
    );
    eprintln!("largest turn {largest_turn} bytes; {turns_left_unfinished} turns left more to read");
}

/// The nodes' addresses are chosen before they bind them: a port from the kernel's ephemeral range could meanwhile
/// become the local port of any process's outgoing connection (it happened, under a process opening thousands), so
/// the tests' ports come from outside it, and one test process never hands out the same port twice.
#[test]
fn test_ports_are_outside_the_ephemeral_range_and_never_handed_out_twice() {
    let (low, high) = ephemeral_range();
    let ports: Vec<u16> = (0..50).map(|_| free_addr().port()).collect();
    assert!(
        ports.iter().all(|p| *p < low || *p > high),
        "{ports:?} against {low}-{high}"
    );
    let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
}
