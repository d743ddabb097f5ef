//! The `[[bridges]]` tables: connections to other brokers, Mosquitto style (see docs/guide/bridges.md). Each
//! bridge names its remote (`address`, TCP or TLS), how to log in, and `[[bridges.topics]]` rules; everything is
//! checked at start, and an error names the file, the position and the key (`bridges[0].topics[1].qos`).

use super::error::{file_origin, ConfigError, Problem};
use super::Source;
use mqtt_core::bridge::{BridgeConfig, Direction, Rule};
use mqtt_core::packet::{ProtocolVersion, QoS};
use mqtt_core::topic::{validate_topic_filter, validate_topic_name};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The longest `queue_size`: a Receive Maximum is 16 bits.
pub const MAX_QUEUE_SIZE: u64 = 65_535;

/// One `[[bridges]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeFile {
    pub name: Spanned<String>,
    /// `host:port` of the remote broker.
    pub address: Spanned<String>,
    /// `mqtt` (TCP, the default) or `mqtts` (TLS).
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    /// TLS: the CA certificates (PEM) the remote's certificate is verified against.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// TLS: the name the remote's certificate must carry; default: the host of `address`.
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub client_id: Option<Spanned<String>>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// `mqttv5` (the default) or `mqttv311`, as Mosquitto's `bridge_protocol_version`.
    #[serde(default)]
    pub protocol_version: Option<Spanned<String>>,
    #[serde(default)]
    pub clean_start: Option<bool>,
    #[serde(default)]
    pub session_expiry: Option<u32>,
    #[serde(default)]
    pub keep_alive: Option<u16>,
    #[serde(default)]
    pub queue_size: Option<Spanned<u64>>,
    #[serde(default)]
    pub try_private: Option<bool>,
    #[serde(default)]
    pub reconnect_delay_min_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub reconnect_delay_max_ms: Option<Spanned<u64>>,
    pub topics: Spanned<Vec<Spanned<TopicFile>>>,
}

/// One `[[bridges.topics]]` rule as written (Mosquitto: `topic pattern direction qos local-prefix remote-prefix`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicFile {
    pub pattern: Spanned<String>,
    /// `in`, `out` or `both`; default `out` (as Mosquitto).
    #[serde(default)]
    pub direction: Option<Spanned<String>>,
    #[serde(default)]
    pub qos: Option<Spanned<u8>>,
    #[serde(default)]
    pub local_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub remote_prefix: Option<Spanned<String>>,
}

/// TLS towards the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTls {
    pub ca_file: PathBuf,
    pub server_name: String,
}

/// One bridge of the effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSettings {
    /// `host:port`, resolved when connecting (so a remote whose address changes is found again).
    pub address: String,
    pub tls: Option<BridgeTls>,
    pub core: BridgeConfig,
}

/// Validates every `[[bridges]]` table.
pub fn resolve(list: &[BridgeFile], source: &Source<'_>) -> Result<Vec<BridgeSettings>, ConfigError> {
    let mut bridges: Vec<BridgeSettings> = Vec::new();
    for (i, file) in list.iter().enumerate() {
        let bridge = resolve_one(i, file, source)?;
        if bridges.iter().any(|b| b.core.name == bridge.core.name) {
            return Err(invalid(
                source,
                format!("bridges[{i}].name"),
                file.name.span(),
                format!("{:?} names another bridge already", bridge.core.name),
            ));
        }
        bridges.push(bridge);
    }
    Ok(bridges)
}

fn invalid(source: &Source<'_>, key: String, span: std::ops::Range<usize>, why: String) -> ConfigError {
    ConfigError::Invalid {
        origin: file_origin(source.path, source.text, span),
        key,
        problem: Problem::Bridge(why),
    }
}

fn resolve_one(i: usize, file: &BridgeFile, source: &Source<'_>) -> Result<BridgeSettings, ConfigError> {
    let key = |k: &str| format!("bridges[{i}].{k}");
    let name = file.name.get_ref().trim().to_string();
    if name.is_empty() || name.contains(['/', '+', '#']) {
        return Err(invalid(
            source,
            key("name"),
            file.name.span(),
            "must be non-empty, without '/', '+' or '#'".into(),
        ));
    }
    let address = file.address.get_ref().trim().to_string();
    let host = match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            host.trim_start_matches('[').trim_end_matches(']').to_string()
        }
        _ => {
            return Err(invalid(
                source,
                key("address"),
                file.address.span(),
                format!("{address:?} is not HOST:PORT (e.g. \"broker.example.com:8883\")"),
            ))
        }
    };
    let tls = match file.protocol.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
        None | Some(("mqtt", _)) => None,
        Some(("mqtts", span)) => {
            let Some(ca_file) = file.ca_file.clone() else {
                return Err(invalid(
                    source,
                    key("ca_file"),
                    span,
                    "is required for protocol \"mqtts\"".into(),
                ));
            };
            let server_name = file.server_name.as_ref().map_or(host, |s| s.get_ref().clone());
            Some(BridgeTls { ca_file, server_name })
        }
        Some((other, span)) => {
            return Err(invalid(
                source,
                key("protocol"),
                span,
                format!("{other:?} is not \"mqtt\" or \"mqtts\""),
            ))
        }
    };
    if tls.is_none() && (file.ca_file.is_some() || file.server_name.is_some()) {
        return Err(invalid(
            source,
            key("ca_file"),
            file.address.span(),
            "ca_file and server_name apply only to protocol \"mqtts\"".into(),
        ));
    }
    let protocol = match file.protocol_version.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
        None | Some(("mqttv5", _)) => ProtocolVersion::V5,
        Some(("mqttv311", _)) => ProtocolVersion::V3_1_1,
        Some((other, span)) => {
            return Err(invalid(
                source,
                key("protocol_version"),
                span,
                format!("{other:?} is not \"mqttv5\" or \"mqttv311\""),
            ))
        }
    };
    let mut topics = Vec::new();
    for (j, topic) in file.topics.get_ref().iter().enumerate() {
        topics.push(resolve_topic(i, j, topic.get_ref(), source)?);
    }
    if topics.is_empty() {
        return Err(invalid(
            source,
            key("topics"),
            file.topics.span(),
            "needs at least one [[bridges.topics]] rule".into(),
        ));
    }
    let mut core = BridgeConfig::new(&name, topics);
    core.protocol = protocol;
    if let Some(id) = &file.client_id {
        if id.get_ref().is_empty() || id.get_ref().len() > 65_535 {
            return Err(invalid(
                source,
                key("client_id"),
                id.span(),
                "must be 1 to 65535 bytes".into(),
            ));
        }
        core.client_id = id.get_ref().clone();
    }
    core.username = file.username.clone();
    core.password = file.password.clone().map(bytes::Bytes::from);
    core.clean_start = file.clean_start.unwrap_or(core.clean_start);
    core.session_expiry = file.session_expiry.unwrap_or(core.session_expiry);
    core.keep_alive = file.keep_alive.unwrap_or(core.keep_alive);
    core.try_private = file.try_private.unwrap_or(core.try_private);
    if let Some(size) = &file.queue_size {
        let n = *size.get_ref();
        if n == 0 || n > MAX_QUEUE_SIZE {
            return Err(invalid(
                source,
                key("queue_size"),
                size.span(),
                format!("must be 1 to {MAX_QUEUE_SIZE}"),
            ));
        }
        core.queue_size = n as u16;
    }
    if let Some(ms) = &file.reconnect_delay_min_ms {
        core.reconnect_min = Duration::from_millis((*ms.get_ref()).max(1));
    }
    if let Some(ms) = &file.reconnect_delay_max_ms {
        core.reconnect_max = Duration::from_millis(*ms.get_ref());
        if core.reconnect_max < core.reconnect_min {
            return Err(invalid(
                source,
                key("reconnect_delay_max_ms"),
                ms.span(),
                "must not be below reconnect_delay_min_ms".into(),
            ));
        }
    }
    core.reconnect_max = core.reconnect_max.max(core.reconnect_min);
    Ok(BridgeSettings { address, tls, core })
}

/// The bridges as `[[bridges]]` tables for `--check-config`, without the passwords (the output is for reading,
/// and may end up in a ticket).
pub fn to_toml(bridges: &[BridgeSettings]) -> toml::Value {
    let int = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let text = |s: &str| toml::Value::String(s.to_string());
    let list = bridges
        .iter()
        .map(|b| {
            let c = &b.core;
            let mut t = toml::Table::new();
            t.insert("name".into(), text(&c.name));
            t.insert("address".into(), text(&b.address));
            match &b.tls {
                Some(tls) => {
                    t.insert("protocol".into(), text("mqtts"));
                    t.insert("ca_file".into(), text(&tls.ca_file.display().to_string()));
                    t.insert("server_name".into(), text(&tls.server_name));
                }
                None => {
                    t.insert("protocol".into(), text("mqtt"));
                }
            }
            t.insert("client_id".into(), text(&c.client_id));
            if let Some(user) = &c.username {
                t.insert("username".into(), text(user));
            }
            let version = if c.protocol.is_v5() { "mqttv5" } else { "mqttv311" };
            t.insert("protocol_version".into(), text(version));
            t.insert("clean_start".into(), toml::Value::Boolean(c.clean_start));
            t.insert("session_expiry".into(), int(c.session_expiry.into()));
            t.insert("keep_alive".into(), int(c.keep_alive.into()));
            t.insert("queue_size".into(), int(c.queue_size.into()));
            t.insert("try_private".into(), toml::Value::Boolean(c.try_private));
            t.insert("reconnect_delay_min_ms".into(), int(c.reconnect_min.as_millis() as u64));
            t.insert("reconnect_delay_max_ms".into(), int(c.reconnect_max.as_millis() as u64));
            let topics = c
                .rules
                .iter()
                .map(|r| {
                    let mut rt = toml::Table::new();
                    rt.insert("pattern".into(), text(&r.pattern));
                    let direction = match r.direction {
                        Direction::In => "in",
                        Direction::Out => "out",
                        Direction::Both => "both",
                    };
                    rt.insert("direction".into(), text(direction));
                    rt.insert("qos".into(), int(r.qos as u64));
                    rt.insert("local_prefix".into(), text(&r.local_prefix));
                    rt.insert("remote_prefix".into(), text(&r.remote_prefix));
                    toml::Value::Table(rt)
                })
                .collect();
            t.insert("topics".into(), toml::Value::Array(topics));
            toml::Value::Table(t)
        })
        .collect();
    toml::Value::Array(list)
}

fn resolve_topic(i: usize, j: usize, file: &TopicFile, source: &Source<'_>) -> Result<Rule, ConfigError> {
    let key = |k: &str| format!("bridges[{i}].topics[{j}].{k}");
    let pattern = file.pattern.get_ref().clone();
    let direction = match file.direction.as_ref().map(|d| (d.get_ref().as_str(), d.span())) {
        None | Some(("out", _)) => Direction::Out,
        Some(("in", _)) => Direction::In,
        Some(("both", _)) => Direction::Both,
        Some((other, span)) => {
            return Err(invalid(
                source,
                key("direction"),
                span,
                format!("{other:?} is not \"in\", \"out\" or \"both\""),
            ))
        }
    };
    let qos = match &file.qos {
        None => QoS::AtMostOnce,
        Some(q) => QoS::from_u8(*q.get_ref())
            .ok_or_else(|| invalid(source, key("qos"), q.span(), "must be 0, 1 or 2".into()))?,
    };
    let mut prefixes = Vec::new();
    for (name, prefix) in [
        ("local_prefix", &file.local_prefix),
        ("remote_prefix", &file.remote_prefix),
    ] {
        let text = prefix.as_ref().map_or(String::new(), |p| p.get_ref().clone());
        // A prefix is the start of a topic name: no wildcards (Mosquitto refuses them too).
        if let Some(p) = prefix.as_ref().filter(|_| !text.is_empty()) {
            if validate_topic_name(&format!("{text}x")).is_err() {
                return Err(invalid(
                    source,
                    key(name),
                    p.span(),
                    format!("{text:?} is not the start of a topic name (no '+', '#' or NUL)"),
                ));
            }
        }
        prefixes.push(text);
    }
    let remote_prefix = prefixes.pop().unwrap_or_default();
    let local_prefix = prefixes.pop().unwrap_or_default();
    for filter in [format!("{local_prefix}{pattern}"), format!("{remote_prefix}{pattern}")] {
        if let Err(e) = validate_topic_filter(&filter) {
            return Err(invalid(
                source,
                key("pattern"),
                file.pattern.span(),
                format!("{filter:?} is not a valid topic filter ({e:?})"),
            ));
        }
    }
    Ok(Rule {
        pattern,
        direction,
        qos,
        local_prefix,
        remote_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse_file, resolve, Cli, ConfigError, Settings};
    use super::*;
    use std::path::Path;

    fn from_text(text: &str) -> Result<Settings, ConfigError> {
        let path = Path::new("site.toml");
        let file = parse_file(path, text)?;
        resolve(&file, Some(&Source { path, text }), &Cli::default())
    }

    const CLOUD: &str = r#"
[[bridges]]
name = "cloud"
address = "cloud.example.com:8883"
protocol = "mqtts"
ca_file = "/etc/ca.pem"
client_id = "site1"
username = "site1"
password = "secret"
protocol_version = "mqttv311"
clean_start = false
keep_alive = 30
queue_size = 500

[[bridges.topics]]
pattern = "sensors/#"
direction = "out"
qos = 1
remote_prefix = "site1/"

[[bridges.topics]]
pattern = "cmd/#"
direction = "in"
qos = 2
local_prefix = "local/"
remote_prefix = "site1/"
"#;

    #[test]
    fn a_full_bridge_table_resolves() {
        let settings = from_text(CLOUD).unwrap();
        let [bridge] = &settings.bridges[..] else {
            panic!("one bridge: {:?}", settings.bridges)
        };
        assert_eq!(bridge.address, "cloud.example.com:8883");
        assert_eq!(
            bridge.tls,
            Some(BridgeTls {
                ca_file: "/etc/ca.pem".into(),
                server_name: "cloud.example.com".into()
            })
        );
        let core = &bridge.core;
        assert_eq!(
            (core.client_id.as_str(), core.protocol, core.keep_alive, core.queue_size),
            ("site1", ProtocolVersion::V3_1_1, 30, 500)
        );
        assert_eq!(core.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(core.rules[0].remote_filter(), "site1/sensors/#");
        assert_eq!(core.rules[1].local_filter(), "local/cmd/#");
        assert_eq!(
            (core.rules[1].direction, core.rules[1].qos),
            (Direction::In, QoS::ExactlyOnce)
        );
    }

    fn error(text: &str) -> String {
        from_text(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_values_are_refused_naming_file_position_and_key() {
        let bad_qos = CLOUD.replace("qos = 2", "qos = 3");
        assert_eq!(
            error(&bad_qos),
            "site.toml:24:7: key `bridges[0].topics[1].qos`: must be 0, 1 or 2"
        );
        let no_port = CLOUD.replace("cloud.example.com:8883", "cloud.example.com");
        assert!(
            error(&no_port)
                .starts_with("site.toml:4:11: key `bridges[0].address`: \"cloud.example.com\" is not HOST:PORT"),
            "{}",
            error(&no_port)
        );
        let wildcard_prefix = CLOUD.replace("local_prefix = \"local/\"", "local_prefix = \"local/#/\"");
        assert!(error(&wildcard_prefix).contains("key `bridges[0].topics[1].local_prefix`"));
        let bad_pattern = CLOUD.replace("cmd/#", "cmd/#/x");
        assert!(error(&bad_pattern).contains("key `bridges[0].topics[1].pattern`"));
        let bad_direction = CLOUD.replace("direction = \"in\"", "direction = \"sideways\"");
        assert!(error(&bad_direction).contains("\"sideways\" is not \"in\", \"out\" or \"both\""));
        let no_ca = CLOUD.replace("ca_file = \"/etc/ca.pem\"\n", "");
        assert!(error(&no_ca).contains("key `bridges[0].ca_file`: is required for protocol \"mqtts\""));
        let version = CLOUD.replace("mqttv311", "mqttv4");
        assert!(error(&version).contains("key `bridges[0].protocol_version`"));
        let queue = CLOUD.replace("queue_size = 500", "queue_size = 0");
        assert!(error(&queue).contains("key `bridges[0].queue_size`: must be 1 to 65535"));
        let unknown = CLOUD.replace("keep_alive = 30", "keepalive = 30");
        assert!(error(&unknown).contains("keepalive"), "{}", error(&unknown));
        // --check-config prints what parses back to the same bridges (less the password).
        let printed = from_text(CLOUD).unwrap().to_toml();
        assert!(!printed.contains("secret"), "{printed}");
        let mut again = from_text(&printed).unwrap().bridges;
        again[0].core.password = Some(bytes::Bytes::from("secret"));
        assert_eq!(again, from_text(CLOUD).unwrap().bridges);
        let twice = format!("{CLOUD}{}", CLOUD.replace("address = \"cloud", "address = \"other"));
        assert!(error(&twice).contains("key `bridges[1].name`: \"cloud\" names another bridge already"));
    }
}
