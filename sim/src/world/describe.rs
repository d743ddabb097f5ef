//! Packets as the trace shows them.

use super::*;

/// A short description of a packet for the trace.
pub(crate) fn describe(packet: &Packet) -> String {
    match packet {
        Packet::Connect(c) => format!("CONNECT {} clean={}", c.client_id, c.clean_start),
        Packet::ConnAck(c) => format!("CONNACK present={} {:?}", c.session_present, c.reason),
        Packet::Publish(p) => format!(
            "PUBLISH {}{} q{} id={} dup={} retain={} {} ({} bytes)",
            p.topic,
            p.properties
                .topic_alias
                .map(|a| format!(" alias={a}"))
                .unwrap_or_default(),
            p.qos as u8,
            p.packet_id,
            p.dup,
            p.retain,
            String::from_utf8_lossy(&p.payload).split(' ').next().unwrap_or(""),
            p.payload.len()
        ),
        Packet::PubAck(r) => format!("PUBACK {}", r.packet_id),
        Packet::PubRec(r) => format!("PUBREC {}", r.packet_id),
        Packet::PubRel(r) => format!("PUBREL {}", r.packet_id),
        Packet::PubComp(r) => format!("PUBCOMP {}", r.packet_id),
        Packet::Subscribe(s) => format!(
            "SUBSCRIBE id={} {:?}",
            s.packet_id,
            s.filters
                .iter()
                .map(|(f, o)| format!("{f} q{}", o.qos as u8))
                .collect::<Vec<_>>()
        ),
        Packet::SubAck(s) => format!("SUBACK {:?}", s.reasons),
        Packet::Unsubscribe(u) => format!("UNSUBSCRIBE {:?}", u.filters),
        Packet::UnsubAck(_) => "UNSUBACK".into(),
        Packet::PingReq => "PINGREQ".into(),
        Packet::PingResp => "PINGRESP".into(),
        Packet::Disconnect(d) => format!("DISCONNECT {:?}", d.reason),
        Packet::Auth(_) => "AUTH".into(),
    }
}
