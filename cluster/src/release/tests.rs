use super::*;
use bytes::Bytes;

fn tx(conn: u64, data: &[u8]) -> Output {
    Output::Transmit {
        conn: ConnectionId(conn),
        data: Bytes::copy_from_slice(data),
    }
}

/// A QoS 0 PUBLISH of topic "t" with `payload` (3.1.1 layout: no properties).
fn qos0_publish(payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, b't'];
    body.extend_from_slice(payload);
    let mut packet = vec![0x30, body.len() as u8];
    packet.extend(body);
    packet
}

/// A QoS 1 PUBLISH of topic "t", packet id 1.
fn qos1_publish(payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, b't', 0, 1];
    body.extend_from_slice(payload);
    let mut packet = vec![0x32, body.len() as u8];
    packet.extend(body);
    packet
}

const PUBACK: &[u8] = &[0x40, 2, 0, 1];

/// Holds `outputs` for one entry proposed at once as `index` of `term`.
fn hold(held: &mut Held, index: u64, term: u64, records: &[Record], outputs: Vec<Output>) {
    held.hold(records, outputs);
    held.seal(index, term);
}

fn store_record() -> Record {
    Record::SessionExpiry { key: 1, expiry: 60 }
}

fn retain_record() -> Record {
    Record::RetainClear { topic: "t".into() }
}

#[test]
fn free_output_of_another_connection_overtakes_a_held_batch() {
    let mut held = Held::new(1 << 20);
    hold(&mut held, 5, 1, &[store_record()], vec![tx(1, PUBACK)]);
    let free = held.pass_or_queue(vec![tx(2, &qos0_publish(b"x"))]);
    assert_eq!(free, vec![tx(2, &qos0_publish(b"x"))], "connection 2 waits for nothing");
    assert_eq!(held.len(), 1);
}

#[test]
fn free_output_of_a_waiting_connection_keeps_its_order() {
    let mut held = Held::new(1 << 20);
    hold(&mut held, 5, 1, &[store_record()], vec![tx(1, PUBACK)]);
    let free = held.pass_or_queue(vec![
        tx(1, &qos0_publish(b"x")),
        Output::Close { conn: ConnectionId(1) },
    ]);
    assert!(free.is_empty(), "connection 1's bytes must follow its held PUBACK");
    let released = held.release_through(5);
    assert_eq!(
        released[0].2,
        vec![
            tx(1, PUBACK),
            tx(1, &qos0_publish(b"x")),
            Output::Close { conn: ConnectionId(1) }
        ]
    );
    assert!(held.is_empty());
    // Nothing held any more: connection 1 flows again.
    assert_eq!(held.pass_or_queue(vec![tx(1, PUBACK)]).len(), 1);
}

#[test]
fn a_held_retained_change_holds_every_free_output() {
    // A subscriber without a session gets retained messages with no record of its own: it must not see a retained
    // message whose record may still be lost.
    let mut held = Held::new(1 << 20);
    hold(&mut held, 7, 2, &[retain_record()], Vec::new());
    assert!(held.pass_or_queue(vec![tx(3, PUBACK)]).is_empty());
    assert_eq!(held.release_through(6).len(), 0);
    let released = held.release_through(7);
    assert_eq!(released, vec![(7, 2, vec![tx(3, PUBACK)])]);
    assert_eq!(
        held.pass_or_queue(vec![tx(3, PUBACK)]).len(),
        1,
        "the barrier is gone once committed"
    );
}

#[test]
fn queued_outputs_follow_the_last_batch_and_release_in_order() {
    let mut held = Held::new(1 << 20);
    hold(&mut held, 1, 1, &[store_record()], vec![tx(1, b"a")]);
    hold(&mut held, 2, 1, &[store_record()], vec![tx(2, b"b")]);
    assert!(held.pass_or_queue(vec![tx(1, b"c")]).is_empty());
    assert_eq!(held.release_through(1), vec![(1, 1, vec![tx(1, b"a")])]);
    // `c` queued behind entry 2 (the last batch then), so connection 1 still waits for it.
    assert!(held.pass_or_queue(vec![tx(1, b"d")]).is_empty());
    assert_eq!(
        held.release_through(2),
        vec![(2, 1, vec![tx(2, b"b"), tx(1, b"c"), tx(1, b"d")])]
    );
}

#[test]
fn beyond_the_byte_bound_qos0_publishes_are_dropped_and_counted() {
    let big = qos0_publish(&[7; 100]);
    let mut held = Held::new(150);
    hold(&mut held, 1, 1, &[store_record()], vec![tx(1, PUBACK)]);
    // Connection 1 waits, so its QoS 0 output queues: the first fits, the next two do not.
    assert!(held.pass_or_queue(vec![tx(1, &big)]).is_empty());
    assert!(held.pass_or_queue(vec![tx(1, &big)]).is_empty());
    let mut two = big.clone();
    two.extend_from_slice(&big);
    assert!(held.pass_or_queue(vec![tx(1, &two)]).is_empty());
    assert_eq!(held.dropped_qos0(), 3);
    assert_eq!(held.bytes(), PUBACK.len() + big.len());
    assert!(held.bytes() <= 150);
    // QoS 1 and acknowledgements are kept past the bound (the broker's in-flight limits bound them).
    let q1 = qos1_publish(&[1; 100]);
    hold(&mut held, 2, 1, &[store_record()], vec![tx(1, &q1), tx(1, PUBACK)]);
    assert_eq!(held.dropped_qos0(), 3);
    let released: Vec<Output> = held.release_through(2).into_iter().flat_map(|(_, _, o)| o).collect();
    assert_eq!(released, vec![tx(1, PUBACK), tx(1, &big), tx(1, &q1), tx(1, PUBACK)]);
    assert_eq!(held.bytes(), 0);
}

#[test]
fn a_run_mixing_qos0_with_other_packets_is_kept() {
    let mut mixed = qos0_publish(&[1; 100]);
    mixed.extend_from_slice(PUBACK);
    let mut held = Held::new(10);
    hold(&mut held, 1, 1, &[store_record()], vec![tx(1, &mixed)]);
    assert_eq!(held.dropped_qos0(), 0);
    assert_eq!(held.bytes(), mixed.len());
}

#[test]
fn a_packet_split_over_transmits_is_judged_whole() {
    let packet = qos0_publish(&[9; 60]);
    let (head, tail) = packet.split_at(10);
    let mut held = Held::new(20);
    hold(&mut held, 1, 1, &[store_record()], vec![tx(1, head), tx(1, tail)]);
    assert_eq!(held.dropped_qos0(), 1);
    assert_eq!(held.len(), 0);
    // A truncated packet is not recognised as whole: kept.
    let mut held = Held::new(5);
    hold(&mut held, 1, 1, &[store_record()], vec![tx(1, head)]);
    assert_eq!(held.dropped_qos0(), 0);
    assert_eq!(held.len(), 1);
}

#[test]
fn drop_all_forgets_connections_and_bytes() {
    let mut held = Held::new(1 << 20);
    hold(&mut held, 1, 1, &[retain_record()], vec![tx(1, PUBACK)]);
    assert_eq!(held.drop_all(), (1, Vec::new()));
    assert_eq!(held.bytes(), 0);
    assert_eq!(held.pass_or_queue(vec![tx(1, PUBACK)]).len(), 1);
}

#[test]
fn drop_all_names_the_connections_whose_close_it_dropped() {
    let mut held = Held::new(1 << 20);
    hold(&mut held, 1, 1, &[retain_record()], vec![tx(1, PUBACK)]);
    // A free output behind the held batch is queued too (its connection's Close must not overtake the PUBACK).
    let queued = held.pass_or_queue(vec![tx(2, b"bye"), Output::Close { conn: ConnectionId(2) }]);
    assert!(queued.is_empty());
    assert_eq!(held.drop_all(), (3, vec![ConnectionId(2)]));
}

#[test]
fn records_of_several_inputs_gather_into_one_open_batch() {
    let mut held = Held::new(1 << 20);
    held.hold(&[store_record()], vec![tx(1, b"a")]);
    held.hold(&[retain_record()], vec![tx(2, b"b")]);
    // Not proposed yet: nothing can be released, and the retained change already holds free outputs.
    assert!(held.release_through(u64::MAX - 1).is_empty());
    assert!(held.pass_or_queue(vec![tx(3, b"c")]).is_empty());
    held.seal(4, 1);
    assert_eq!(
        held.release_through(4),
        vec![(4, 1, vec![tx(1, b"a"), tx(2, b"b"), tx(3, b"c")])]
    );
    assert_eq!(held.pass_or_queue(vec![tx(3, b"d")]).len(), 1);
}

#[test]
fn take_open_removes_only_the_unproposed_batch() {
    let mut held = Held::new(1 << 20);
    hold(&mut held, 1, 1, &[store_record()], vec![tx(1, b"a")]);
    held.hold(&[store_record()], vec![tx(2, b"b")]);
    assert_eq!(held.take_open(), vec![tx(2, b"b")]);
    assert_eq!(held.pass_or_queue(vec![tx(2, b"c")]).len(), 1);
    assert_eq!(held.len(), 1);
}
