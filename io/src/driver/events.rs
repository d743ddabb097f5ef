//! Log lines for the core's [`Event`]s.

use mqtt_core::broker::Event;
use mqtt_core::packet::ProtocolVersion;

fn version(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

pub fn log_event(event: &Event) {
    match event {
        Event::ClientConnected {
            conn,
            client_id,
            peer,
            protocol,
            clean_start,
            keep_alive,
        } => log::info!(
            "client connected: client_id={client_id:?} addr={peer} protocol=MQTT-{} clean_start={clean_start} \
             keep_alive={keep_alive}s conn={}",
            version(*protocol),
            conn.0
        ),
        Event::ClientDisconnected {
            conn,
            client_id,
            reason,
        } => log::info!(
            "client disconnected: client_id={} reason={reason} conn={}",
            client_id
                .as_deref()
                .map_or_else(|| "-".to_string(), |id| format!("{id:?}")),
            conn.0
        ),
        Event::AuthenticationFailed {
            conn,
            peer,
            client_id,
            username,
            reason,
            delay_ms,
        } => log::warn!(
            "authentication failed: addr={peer} client_id={client_id:?} username={} reason={reason} \
             refusal_delay={delay_ms}ms conn={}",
            username
                .as_deref()
                .map_or_else(|| "-".to_string(), |u| format!("{u:?}")),
            conn.0
        ),
        Event::WillRefused { client_id, topic } => log::warn!(
            "will not published: client_id={client_id:?} may no longer publish to {topic:?} (ACL changed since it \
             connected)"
        ),
        Event::PreconnectBudgetExceeded {
            conn,
            peer,
            buffered_total,
        } => log::warn!(
            "connection closed before CONNACK: bytes buffered from connections not yet accepted \
             ({buffered_total}) exceed max_preconnect_bytes; addr={peer} conn={}",
            conn.0
        ),
        // Debug only: a flood would otherwise write one line per refused message.
        Event::PublishRefused {
            conn,
            packet_id,
            reason,
        } => log::debug!(
            "publish refused by a quota: packet_id={packet_id} reason={reason} conn={}",
            conn.0
        ),
    }
}
