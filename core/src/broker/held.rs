//! A received QoS 1/2 PUBLISH held, unacknowledged, on its connection until every online subscriber's queue has room
//! (see `flow`). Plain data, so that the connection's state can hold a queue of them without depending on the flow
//! control that decides when one is released.

use super::message::Message;
use crate::packet::QoS;
use crate::packet::ReasonCode;
use std::sync::Arc;

/// A received QoS 1/2 PUBLISH waiting for room in a subscriber's queue. Its topic alias is already resolved, so
/// later alias changes on the connection do not affect it.
#[derive(Debug)]
pub struct HeldPublish {
    pub packet_id: u16,
    pub qos: QoS,
    pub message: Arc<Message>,
    /// Refused by authorization: acknowledged with 0x87, routed nowhere.
    pub denied: bool,
    /// Refused by a quota (see `quota`): acknowledged with this reason, routed nowhere.
    pub refused: Option<ReasonCode>,
    /// A QoS 2 resend of a PUBLISH already received (its id awaits PUBREL): nothing to route, answered PUBREC again
    /// [MQTT-4.3.3-9], but in its turn behind the PUBLISHes held before it [MQTT-4.6.0-3].
    pub duplicate: bool,
    /// The planted `HeldRoutedAtArrival` only: the deliveries routing gave it when it was first held.
    #[cfg(feature = "planted-bugs")]
    pub arrival_plan: Option<Vec<(super::session::SessionKey, super::message::Delivery)>>,
    /// The planted `HeldCopyDropped` only: the session whose full queue it was held for.
    #[cfg(feature = "planted-bugs")]
    pub waited_on: Option<super::session::SessionKey>,
}
