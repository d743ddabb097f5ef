//! MQTT 5.0 properties (section 2.2.2.2) as one typed struct shared by every packet.
//!
//! Which properties a given packet may carry, and which may repeat, is the codec's business
//! (`codec::property`): it rejects a property in the wrong packet as a Protocol Error / Malformed Packet.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01, PUBLISH and will: 0 = unspecified bytes, 1 = UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH and will, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will.
    pub content_type: Option<String>,
    /// 0x08, PUBLISH and will.
    pub response_topic: Option<String>,
    /// 0x09, PUBLISH and will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B: may repeat in PUBLISH (server to client); at most one in SUBSCRIBE. Values 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK, DISCONNECT, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<String>,
    /// 0x13, CONNACK, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK, AUTH.
    pub authentication_method: Option<String>,
    /// 0x16, CONNECT, CONNACK, AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT: 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18, will, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT: 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<String>,
    /// 0x1C, CONNACK, DISCONNECT.
    pub server_reference: Option<String>,
    /// 0x1F, every acknowledgement, DISCONNECT, AUTH.
    pub reason_string: Option<String>,
    /// 0x21, CONNECT, CONNACK: never 0.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT, CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH: never 0.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK: 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK: 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26, every packet with properties; may repeat; order is significant and preserved.
    pub user_properties: Vec<(String, String)>,
    /// 0x27, CONNECT, CONNACK: never 0.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK: 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK: 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK: 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        // Field by field, as `== Properties::default()` compared them but without building a default and comparing
        // every slot (every packet encoded and decoded asks this). Naming every field makes a new one a compile
        // error here until it is added.
        let Properties {
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            subscription_identifiers,
            session_expiry_interval,
            assigned_client_identifier,
            server_keep_alive,
            authentication_method,
            authentication_data,
            request_problem_information,
            will_delay_interval,
            request_response_information,
            response_information,
            server_reference,
            reason_string,
            receive_maximum,
            topic_alias_maximum,
            topic_alias,
            maximum_qos,
            retain_available,
            user_properties,
            maximum_packet_size,
            wildcard_subscription_available,
            subscription_identifier_available,
            shared_subscription_available,
        } = self;
        payload_format_indicator.is_none()
            && message_expiry_interval.is_none()
            && content_type.is_none()
            && response_topic.is_none()
            && correlation_data.is_none()
            && subscription_identifiers.is_empty()
            && session_expiry_interval.is_none()
            && assigned_client_identifier.is_none()
            && server_keep_alive.is_none()
            && authentication_method.is_none()
            && authentication_data.is_none()
            && request_problem_information.is_none()
            && will_delay_interval.is_none()
            && request_response_information.is_none()
            && response_information.is_none()
            && server_reference.is_none()
            && reason_string.is_none()
            && receive_maximum.is_none()
            && topic_alias_maximum.is_none()
            && topic_alias.is_none()
            && maximum_qos.is_none()
            && retain_available.is_none()
            && user_properties.is_empty()
            && maximum_packet_size.is_none()
            && wildcard_subscription_available.is_none()
            && subscription_identifier_available.is_none()
            && shared_subscription_available.is_none()
    }
}

/// Properties that are usually absent, kept behind one pointer: nothing is allocated while they are empty, and the
/// struct holding them stays small. A `Publish` or a stored message carries one of these instead of the 344 bytes of
/// [`Properties`] inline, so moving it (through the decoder, the router, the inflight window) copies a pointer, not
/// every property's slot; most PUBLISHes carry no property at all.
///
/// Reads go through `Deref` (an empty set reads as [`Properties::default()`]); a write through `DerefMut` allocates
/// the box first, so hot paths check before they write.
#[derive(Clone, Default)]
pub struct BoxedProperties(Option<Box<Properties>>);

/// What an empty [`BoxedProperties`] reads as.
static EMPTY: Properties = Properties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: Vec::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

impl BoxedProperties {
    /// The properties by value (a default set when none were stored).
    pub fn into_inner(self) -> Properties {
        self.0.map(|boxed| *boxed).unwrap_or_default()
    }
}

impl From<Properties> for BoxedProperties {
    fn from(properties: Properties) -> Self {
        if properties.is_empty() {
            BoxedProperties(None)
        } else {
            BoxedProperties(Some(Box::new(properties)))
        }
    }
}

impl From<BoxedProperties> for Properties {
    fn from(boxed: BoxedProperties) -> Self {
        boxed.into_inner()
    }
}

impl std::ops::Deref for BoxedProperties {
    type Target = Properties;

    fn deref(&self) -> &Properties {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for BoxedProperties {
    fn deref_mut(&mut self) -> &mut Properties {
        self.0.get_or_insert_with(Box::default)
    }
}

/// Equal when the properties are, whether an empty set is boxed or not.
impl PartialEq for BoxedProperties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for BoxedProperties {}

impl PartialEq<Properties> for BoxedProperties {
    fn eq(&self, other: &Properties) -> bool {
        **self == *other
    }
}

impl std::fmt::Debug for BoxedProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::{BoxedProperties, Properties};

    #[test]
    fn an_empty_set_is_not_allocated_and_reads_as_the_default() {
        let boxed = BoxedProperties::from(Properties::default());
        assert!(boxed.0.is_none());
        assert_eq!(*boxed, Properties::default());
        assert!(boxed.is_empty());
    }

    #[test]
    fn a_write_allocates_and_equality_ignores_how_an_empty_set_is_kept() {
        let mut boxed = BoxedProperties::from(Properties::default());
        assert!(boxed.0.is_none());
        boxed.topic_alias = Some(3);
        assert!(boxed.0.is_some());
        assert_eq!(boxed.topic_alias, Some(3));
        boxed.topic_alias = None;
        assert_eq!(
            boxed,
            BoxedProperties::default(),
            "a boxed empty set equals an absent one"
        );
        let full = Properties {
            content_type: Some("text/plain".into()),
            ..Properties::default()
        };
        assert_eq!(BoxedProperties::from(full.clone()).into_inner(), full);
    }

    /// `is_empty` checks field by field: any one property set, even to an empty value, makes the set non-empty,
    /// exactly where it differs from the default.
    #[test]
    fn any_one_property_makes_the_set_non_empty() {
        let one: Vec<Properties> = vec![
            Properties {
                payload_format_indicator: Some(0),
                ..Properties::default()
            },
            Properties {
                message_expiry_interval: Some(0),
                ..Properties::default()
            },
            Properties {
                content_type: Some(String::new()),
                ..Properties::default()
            },
            Properties {
                correlation_data: Some(Default::default()),
                ..Properties::default()
            },
            Properties {
                subscription_identifiers: vec![1],
                ..Properties::default()
            },
            Properties {
                authentication_data: Some(Default::default()),
                ..Properties::default()
            },
            Properties {
                topic_alias: Some(1),
                ..Properties::default()
            },
            Properties {
                user_properties: vec![(String::new(), String::new())],
                ..Properties::default()
            },
            Properties {
                shared_subscription_available: Some(1),
                ..Properties::default()
            },
        ];
        assert!(Properties::default().is_empty());
        for properties in one {
            assert!(!properties.is_empty(), "{properties:?}");
            assert_ne!(properties, Properties::default());
        }
    }
}
