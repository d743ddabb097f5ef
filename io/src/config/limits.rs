//! The `[limits]` table and the matching `--limit` flags: one declaration per field of
//! [`mqtt_core::broker::Config`], so the file schema, the flags, validation and the `--check-config` output cannot
//! drift apart.

use super::error::{file_origin, ConfigError, Origin, Problem};
use super::Source;
use mqtt_core::broker::Config;
use serde::Deserialize;
use toml::Spanned;

/// What a limit's value must satisfy beyond its type.
#[derive(Debug, Clone, Copy)]
enum Check {
    Any,
    NonZero,
    AtMost(u64),
}

/// A limit value: an unsigned integer or a switch.
trait LimitValue: Copy {
    /// The value as a number, `None` for switches (which need no range check).
    fn number(self) -> Option<u64>;
    fn to_toml(self) -> toml::Value;
}

macro_rules! unsigned {
    ($($ty:ty),*) => {$(
        impl LimitValue for $ty {
            fn number(self) -> Option<u64> {
                u64::try_from(self).ok()
            }
            fn to_toml(self) -> toml::Value {
                // TOML integers are i64; only a flag could set a larger value, and i64::MAX means "unlimited" just
                // as well.
                toml::Value::Integer(i64::try_from(self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, usize);

impl LimitValue for bool {
    fn number(self) -> Option<u64> {
        None
    }
    fn to_toml(self) -> toml::Value {
        toml::Value::Boolean(self)
    }
}

fn check<T: LimitValue>(value: T, rule: Check) -> Result<(), Problem> {
    match (rule, value.number()) {
        (Check::NonZero, Some(0)) => Err(Problem::Zero),
        (Check::AtMost(max), Some(n)) if n > max => Err(Problem::TooLarge { max }),
        _ => Ok(()),
    }
}

macro_rules! limits {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $rule:expr, $flag:literal; )*) => {
        /// The `[limits]` table as written in the file: every key optional, spans kept for error messages.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct LimitsFile {
            $( #[serde(default)] pub $name: Option<Spanned<$ty>>, )*
        }

        /// One flag per limit; a flag given wins over the file.
        #[derive(Debug, Default, Clone, clap::Args)]
        pub struct LimitFlags {
            $( $(#[doc = $doc])* #[arg(long, value_name = "N", help_heading = "Limits")] pub $name: Option<$ty>, )*
        }

        /// The core's config: defaults, then the file, then the flags; each value checked where it came from.
        pub fn resolve(file: &LimitsFile, source: Option<&Source<'_>>, flags: &LimitFlags) -> Result<Config, ConfigError> {
            let mut config = Config::default();
            $(
                if let (Some(value), Some(source)) = (&file.$name, source) {
                    check(*value.get_ref(), $rule).map_err(|problem| ConfigError::Invalid {
                        origin: file_origin(source.path, source.text, value.span()),
                        key: concat!("limits.", stringify!($name)).to_string(),
                        problem,
                    })?;
                    config.$name = *value.get_ref();
                }
                if let Some(value) = flags.$name {
                    check(value, $rule).map_err(|problem| ConfigError::Invalid {
                        origin: Origin::Flag($flag),
                        key: concat!("limits.", stringify!($name)).to_string(),
                        problem,
                    })?;
                    config.$name = value;
                }
            )*
            Ok(config)
        }

        /// The `[limits]` table of an effective config, every key present.
        pub fn to_table(config: &Config) -> toml::Table {
            let mut table = toml::Table::new();
            $( table.insert(stringify!($name).to_string(), config.$name.to_toml()); )*
            table
        }
    };
}

limits! {
    /// Largest packet accepted, in bytes, fixed header included
    max_packet_size: u32 = Check::NonZero, "--max-packet-size";
    /// Unacknowledged QoS 1/2 PUBLISHes a client may send (Receive Maximum)
    receive_maximum: u16 = Check::NonZero, "--receive-maximum";
    /// Cap on QoS 1/2 messages in flight towards one client
    max_inflight: u16 = Check::NonZero, "--max-inflight";
    /// QoS 1/2 messages queued per session; a full online queue holds publishers back
    max_queued_messages: usize = Check::NonZero, "--max-queued-messages";
    /// Bytes of output held for a client that is not reading
    max_outbuf_bytes: usize = Check::NonZero, "--max-outbuf-bytes";
    /// PUBLISH payloads of at least this many bytes are shared between subscribers, not copied
    shared_payload_min: usize = Check::Any, "--shared-payload-min";
    /// Maximum simultaneous connections
    max_connections: usize = Check::NonZero, "--max-connections";
    /// Cap on Session Expiry Interval, seconds
    max_session_expiry: u32 = Check::Any, "--max-session-expiry";
    /// Cap on keep alive, seconds (0 = no cap)
    max_keep_alive: u16 = Check::Any, "--max-keep-alive";
    /// Largest CONNECT accepted, bytes (before CONNACK; checked before the body is buffered)
    max_connect_size: u32 = Check::NonZero, "--max-connect-size";
    /// Bytes buffered from all connections not yet past CONNACK; the one that exceeds it is closed (0 = unlimited)
    max_preconnect_bytes: usize = Check::Any, "--max-preconnect-bytes";
    /// Bytes of partial packets held from all connected clients; above it the clients holding the most are not read
    max_partial_input_bytes: usize = Check::NonZero, "--max-partial-input-bytes";
    /// Milliseconds a new connection has to send CONNECT
    connect_timeout_ms: u64 = Check::NonZero, "--connect-timeout-ms";
    /// Whether retained messages are supported (true|false)
    retain_available: bool = Check::Any, "--retain-available";
    /// Topic Alias Maximum accepted from clients (0 disables)
    max_topic_alias: u16 = Check::Any, "--max-topic-alias";
    /// Highest QoS supported (0, 1 or 2)
    maximum_qos: u8 = Check::AtMost(2), "--maximum-qos";
    /// Whether wildcard subscriptions are available (true|false)
    wildcard_subscriptions: bool = Check::Any, "--wildcard-subscriptions";
    /// Whether shared subscriptions are available (true|false)
    shared_subscriptions: bool = Check::Any, "--shared-subscriptions";
    /// Whether subscription identifiers are available (true|false)
    subscription_identifiers: bool = Check::Any, "--subscription-identifiers";
    /// Seconds between $SYS statistics publishes (0 disables)
    sys_interval: u32 = Check::Any, "--sys-interval";
    /// Milliseconds the refusal of a repeated failed login from one IP is held, doubling per failure (0 = off)
    auth_failure_delay_ms: u64 = Check::Any, "--auth-failure-delay-ms";
    /// Cap on that hold, milliseconds
    auth_failure_delay_max_ms: u64 = Check::Any, "--auth-failure-delay-max-ms";
    /// Connected clients per source IP address (0 = unlimited)
    max_connections_per_address: usize = Check::Any, "--max-connections-per-address";
    /// CONNECTs per second per source IP address (0 = unlimited)
    max_connects_per_second_per_address: u32 = Check::Any, "--max-connects-per-second-per-address";
    /// PUBLISHes per second per connection; more are dropped (0 = unlimited)
    max_publish_rate: u32 = Check::Any, "--max-publish-rate";
    /// Payload bytes per second per connection; more are dropped (0 = unlimited)
    max_publish_bytes_rate: u64 = Check::Any, "--max-publish-bytes-rate";
    /// Subscriptions per client (0 = unlimited)
    max_subscriptions_per_client: usize = Check::Any, "--max-subscriptions-per-client";
    /// Levels of a topic name or filter (0 = unlimited)
    max_topic_levels: usize = Check::Any, "--max-topic-levels";
    /// Bytes of a topic name or filter (0 = unlimited)
    max_topic_length: usize = Check::Any, "--max-topic-length";
    /// Payload bytes of QoS 1/2 messages held per session; a full online session holds publishers back (0 = unlimited)
    max_queued_bytes: u64 = Check::Any, "--max-queued-bytes";
    /// Payload bytes of QoS 1/2 messages held by all sessions together (0 = unlimited)
    max_queued_bytes_total: u64 = Check::Any, "--max-queued-bytes-total";
    /// Retained messages sent on subscribe queued for one session at a time; the rest follow as it reads
    retained_slice: usize = Check::NonZero, "--retained-slice";
}
