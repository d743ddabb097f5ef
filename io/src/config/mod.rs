//! The broker's configuration: a TOML file (`--config`), overridden by flags, validated into [`Settings`].
//!
//! Precedence, lowest first: built-in defaults, the file, the flags. Every error names the key and where the bad
//! value came from (`file:line:col` or the flag).

mod bridge;
mod cluster;
mod error;
mod limits;

pub use bridge::{BridgeFile, BridgeSettings, BridgeTls};
pub use cluster::{ClusterFile, ClusterSettings, Peer, MAX_CLUSTER_ID_LEN};

pub use error::{ConfigError, Origin, Problem};
pub use limits::{LimitFlags, LimitsFile};

use clap::Parser;
use mqtt_core::broker::{Config, ListenerId};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Where the broker listens when neither the file nor the flags say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";
/// Where the broker keeps its data when neither the file nor the flags say.
pub const DEFAULT_DATA_DIR: &str = "./mqtt-data";

/// The transport spoken on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// MQTT over TCP.
    #[default]
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// MQTT over WebSockets (MQTT 5.0 section 6), over TCP.
    Ws,
    /// MQTT over WebSockets over TLS.
    Wss,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Mqtts => "mqtts",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Mqtts | Protocol::Wss)
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, Protocol::Ws | Protocol::Wss)
    }
}

/// The WebSocket path when `ws_path` is not given.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// A TLS listener's certificate, key and client-certificate policy (files are read when the broker starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates are verified against.
    pub ca_file: Option<PathBuf>,
    /// Refuse clients without a valid certificate (mutual TLS).
    pub require_client_cert: bool,
    /// The client certificate's subject Common Name replaces the CONNECT's user name (and no password is asked).
    pub use_identity_as_username: bool,
}

/// When acknowledged state reaches the disk (see docs/guide/durability.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Sync {
    /// An acknowledgement is sent only after its record is synced to disk.
    #[default]
    Always,
    /// Records are written at once and synced every `sync_interval_ms`.
    Interval,
    /// Memory only: nothing is written, nothing survives a restart.
    None,
}

impl Sync {
    pub fn as_str(self) -> &'static str {
        match self {
            Sync::Always => "always",
            Sync::Interval => "interval",
            Sync::None => "none",
        }
    }
}

/// Which I/O driver runs the event loop (see docs/guide/operations.md, "I/O driver").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoDriver {
    /// io_uring where a probe ring can be created, else epoll.
    #[default]
    Auto,
    /// io_uring; the broker does not start without it.
    Uring,
    /// epoll (mio).
    Epoll,
}

impl IoDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::Uring => "uring",
            IoDriver::Epoll => "epoll",
        }
    }
}

/// Default coalescing window of the io_uring driver, and the largest accepted (a window adds up to its length to
/// a message's latency).
pub const DEFAULT_IO_COALESCE_US: u64 = 250;
pub const MAX_IO_COALESCE_US: u64 = 10_000;

/// Default period of `sync = "interval"`.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1000;

/// How much the broker logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// One `[[listeners]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub address: Spanned<String>,
    #[serde(default)]
    pub protocol: Protocol,
    /// Whether clients without a user name may connect here; default: only on loopback addresses.
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
    /// TLS (`mqtts`, `wss`): the server certificate chain and key, PEM.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// TLS: CA certificates for client certificates, PEM.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub require_client_cert: Option<bool>,
    #[serde(default)]
    pub use_identity_as_username: Option<bool>,
    /// WebSockets (`ws`, `wss`): the HTTP path of the upgrade request.
    #[serde(default)]
    pub ws_path: Option<String>,
}

/// The TOML file as written: everything optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listeners: Option<Spanned<Vec<ListenerFile>>>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    #[serde(default)]
    pub log_level: Option<LogLevel>,
    #[serde(default)]
    pub sync: Option<Sync>,
    #[serde(default)]
    pub sync_interval_ms: Option<u64>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub acl_file: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsFile,
    /// Absent: a single broker.
    #[serde(default)]
    pub cluster: Option<Spanned<ClusterFile>>,
    #[serde(default)]
    pub http: Option<HttpFile>,
    #[serde(default)]
    pub io: Option<IoDriver>,
    #[serde(default)]
    pub io_coalesce_us: Option<Spanned<u64>>,
    /// Connections to other brokers (see `bridge`).
    #[serde(default)]
    pub bridges: Vec<BridgeFile>,
}

/// The `[http]` table: the optional metrics and health listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub listen: Option<Spanned<String>>,
}

/// The command line. Flags override the file.
#[derive(Debug, Default, Clone, Parser)]
#[command(name = "mqtt-broker", version, about = "MQTT 3.1/3.1.1/5.0 broker")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file (see mqtt-broker.toml for every key)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for MQTT over TCP; repeatable; replaces the file's listeners [default: 127.0.0.1:1883]
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Directory for persistent data [default: ./mqtt-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log to this file instead of stderr (reopened on SIGHUP)
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Log level [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
    /// Password file of `user:argon2-hash` lines (manage it with `mqtt-broker passwd`); reloaded on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// ACL file in Mosquitto's format (user / topic / pattern lines); reloaded on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub acl_file: Option<PathBuf>,
    /// Whether clients without a user name may connect, on every listener [default: only on loopback listeners]
    #[arg(long, value_name = "BOOL")]
    pub allow_anonymous: Option<bool>,
    /// Seed for the broker's random choices (hash keys, assigned client ids) [default: secret, from the OS]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Durability: always (acknowledge after fsync), interval, or none (memory only) [default: always]
    #[arg(long, value_name = "MODE")]
    pub sync: Option<Sync>,
    /// Period of `--sync interval`, in milliseconds [default: 1000]
    #[arg(long, value_name = "MS")]
    pub sync_interval_ms: Option<u64>,
    /// Start even if the data directory is damaged in the middle, truncating at the damage (data after it is lost)
    #[arg(long)]
    pub repair: bool,
    /// Serve /metrics (Prometheus) and /health over HTTP on this address [default: off]
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Validate the configuration, print the effective configuration as TOML and exit
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub limits: LimitFlags,
    /// I/O driver: uring, epoll, or auto (io_uring where the kernel allows it) [default: auto]
    #[arg(long, value_name = "DRIVER")]
    pub io: Option<IoDriver>,
    /// io_uring only: while many quiet clients send, wait up to this many µs for their packets to gather before a
    /// loop turn (less CPU per message, up to this much added latency); 0: off [default: 250]
    #[arg(long, value_name = "US")]
    pub io_coalesce_us: Option<u64>,
}

/// Subcommands; without one, the broker runs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Add or update a user in a password file (created 0600 if missing), or remove one with --delete. The
    /// password is read from the terminal without echo, or as one line of standard input.
    Passwd {
        /// The password file
        file: PathBuf,
        /// The user name
        user: String,
        /// Take the password from this argument instead of standard input (visible to other local users in
        /// the process list: for scripts and tests)
        #[arg(short = 'b', long, value_name = "PASSWORD", conflicts_with = "delete")]
        password: Option<String>,
        /// Remove the user instead
        #[arg(long)]
        delete: bool,
    },
    /// Ask the nodes of the cluster named in the configuration's [cluster] table (over their node-to-node ports)
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

/// `mqtt-broker cluster ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterAction {
    /// Members, their role, term, commit and applied index, the leader and each follower's lag behind it
    Status,
    /// Add a voter at run time (a Raft configuration change, through the leader); start the new node first, with
    /// `join = true` and the current members in its `peers`
    AddNode {
        /// The new node's id (its `node_id`)
        #[arg(long)]
        id: u64,
        /// Where the other nodes reach it (its node-to-node address, IP:PORT)
        #[arg(long)]
        address: std::net::SocketAddr,
    },
    /// Remove a voter at run time (the leader too: another one is elected); the removed node stops
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
}

/// One listener of the effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub protocol: Protocol,
    /// Whether clients without a user name may connect here.
    pub allow_anonymous: bool,
    /// Certificates and client policy: `Some` exactly for `mqtts` and `wss`.
    pub tls: Option<TlsFiles>,
    /// The WebSocket path: `Some` exactly for `ws` and `wss`.
    pub ws_path: Option<String>,
}

impl Listener {
    /// A plain MQTT-over-TCP listener.
    pub fn plain(address: SocketAddr) -> Listener {
        Listener {
            address,
            protocol: Protocol::Mqtt,
            allow_anonymous: default_anonymous(address),
            tls: None,
            ws_path: None,
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listeners: Vec<Listener>,
    pub data_dir: PathBuf,
    pub log_file: Option<PathBuf>,
    pub log_level: LogLevel,
    pub limits: Config,
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// `None`: draw one from the operating system's randomness.
    pub seed: Option<u64>,
    pub sync: Sync,
    pub sync_interval_ms: u64,
    pub repair: bool,
    /// Where `/metrics` and `/health` are served; `None`: nowhere (the default).
    pub http_listen: Option<SocketAddr>,
    /// `Some`: this broker is one node of a Raft cluster.
    pub cluster: Option<ClusterSettings>,
    /// Which I/O driver runs the event loop.
    pub io: IoDriver,
    /// io_uring's coalescing window (zero: off; see `driver::uring::coalesce`).
    pub io_coalesce: Duration,
    /// Bridges to other brokers.
    pub bridges: Vec<BridgeSettings>,
}

/// The file's text and name, for locating errors.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

/// Parse a configuration file's text. `path` is only used in error messages.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|err| error::from_toml(path, text, &err))
}

/// Read `--config` (if any) and merge it with the flags.
pub fn load(cli: &Cli) -> Result<Settings, ConfigError> {
    match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file = parse_file(path, &text)?;
            resolve(&file, Some(&Source { path, text: &text }), cli)
        }
        None => resolve(&FileConfig::default(), None, cli),
    }
}

/// Merge a parsed file (with its source, for error positions) and the flags.
pub fn resolve(file: &FileConfig, source: Option<&Source<'_>>, cli: &Cli) -> Result<Settings, ConfigError> {
    let listeners = if !cli.listen.is_empty() {
        cli.listen.iter().map(|&address| Listener::plain(address)).collect()
    } else {
        match (&file.listeners, source) {
            (Some(list), Some(source)) => file_listeners(list, source)?,
            _ => vec![default_listener()],
        }
    };
    let sync = cli.sync.or(file.sync).unwrap_or_default();
    let cluster = match (&file.cluster, source) {
        (Some(table), Some(source)) => Some(cluster::resolve(table.get_ref(), source)?),
        _ => None,
    };
    if let (Some(table), Some(source), Sync::None) = (&file.cluster, source, sync) {
        let origin = match cli.sync {
            Some(_) => Origin::Flag("--sync"),
            None => error::file_origin(source.path, source.text, table.span()),
        };
        return Err(ConfigError::Invalid {
            origin,
            key: "sync".to_string(),
            problem: Problem::ClusterNeedsDisk,
        });
    }
    let io_coalesce = resolve_io_coalesce(cli.io_coalesce_us, file.io_coalesce_us.as_ref(), source)?;
    let mut limits = limits::resolve(&file.limits, source, &cli.limits)?;
    limits.persistence = sync != Sync::None;
    let mut listeners: Vec<Listener> = listeners;
    if let Some(allow) = cli.allow_anonymous {
        for listener in &mut listeners {
            listener.allow_anonymous = allow;
        }
    }
    // The core makes a verified certificate's name the user name on these (the driver tells it the name).
    limits.identity_as_username = listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.tls.as_ref().is_some_and(|t| t.use_identity_as_username))
        .map(|(i, _)| ListenerId(i))
        .collect();
    let http_listen = match (
        cli.http_listen,
        file.http.as_ref().and_then(|h| h.listen.as_ref()),
        source,
    ) {
        (Some(address), _, _) => Some(address),
        (None, Some(text), Some(source)) => {
            Some(
                text.get_ref()
                    .trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        origin: error::file_origin(source.path, source.text, text.span()),
                        key: "http.listen".to_string(),
                        problem: Problem::BadAddress(text.get_ref().clone()),
                    })?,
            )
        }
        _ => None,
    };
    let bridges = match source {
        Some(source) => bridge::resolve(&file.bridges, source)?,
        None => Vec::new(),
    };
    Ok(Settings {
        bridges,
        http_listen,
        sync,
        sync_interval_ms: cli
            .sync_interval_ms
            .or(file.sync_interval_ms)
            .unwrap_or(DEFAULT_SYNC_INTERVAL_MS)
            .max(1),
        repair: cli.repair,
        listeners,
        data_dir: cli
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        log_file: cli.log_file.clone().or_else(|| file.log_file.clone()),
        log_level: cli.log_level.or(file.log_level).unwrap_or_default(),
        limits,
        password_file: cli.password_file.clone().or_else(|| file.password_file.clone()),
        acl_file: cli.acl_file.clone().or_else(|| file.acl_file.clone()),
        seed: cli.seed,
        cluster,
        io: cli.io.or(file.io).unwrap_or_default(),
        io_coalesce,
    })
}

/// `io_coalesce_us` from the command line or the file, refused above [`MAX_IO_COALESCE_US`] naming where it came
/// from.
fn resolve_io_coalesce(
    flag: Option<u64>,
    key: Option<&Spanned<u64>>,
    source: Option<&Source<'_>>,
) -> Result<Duration, ConfigError> {
    let (us, origin) = match (flag, key, source) {
        (Some(us), _, _) => (us, Origin::Flag("--io-coalesce-us")),
        (None, Some(key), Some(source)) => (*key.get_ref(), error::file_origin(source.path, source.text, key.span())),
        _ => (DEFAULT_IO_COALESCE_US, Origin::Flag("--io-coalesce-us")),
    };
    if us > MAX_IO_COALESCE_US {
        return Err(ConfigError::Invalid {
            origin,
            key: "io_coalesce_us".to_string(),
            problem: Problem::TooLarge {
                max: MAX_IO_COALESCE_US,
            },
        });
    }
    Ok(Duration::from_micros(us))
}

fn default_listener() -> Listener {
    Listener::plain(SocketAddr::from(([127, 0, 0, 1], 1883)))
}

/// Anonymous clients are let in by default only where nobody but local users can reach the broker.
fn default_anonymous(address: SocketAddr) -> bool {
    address.ip().is_loopback()
}

fn file_listeners(list: &Spanned<Vec<ListenerFile>>, source: &Source<'_>) -> Result<Vec<Listener>, ConfigError> {
    if list.get_ref().is_empty() {
        return Err(ConfigError::Invalid {
            origin: error::file_origin(source.path, source.text, list.span()),
            key: "listeners".to_string(),
            problem: Problem::NoListeners,
        });
    }
    list.get_ref()
        .iter()
        .map(|entry| {
            let text = entry.address.get_ref();
            let address = text.trim().parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                origin: error::file_origin(source.path, source.text, entry.address.span()),
                key: "listeners.address".to_string(),
                problem: Problem::BadAddress(text.clone()),
            })?;
            let invalid = |key: &str, problem: Problem| ConfigError::Invalid {
                origin: error::file_origin(source.path, source.text, entry.address.span()),
                key: format!("listeners.{key}"),
                problem,
            };
            Ok(Listener {
                address,
                protocol: entry.protocol,
                allow_anonymous: entry.allow_anonymous.unwrap_or_else(|| default_anonymous(address)),
                tls: listener_tls(entry).map_err(|(key, problem)| invalid(key, problem))?,
                ws_path: listener_ws_path(entry).map_err(|(key, problem)| invalid(key, problem))?,
            })
        })
        .collect()
}

/// The TLS settings of one entry: required for `mqtts`/`wss`, refused elsewhere (a certificate on a plain
/// listener is almost certainly a mistake in the protocol).
fn listener_tls(entry: &ListenerFile) -> Result<Option<TlsFiles>, (&'static str, Problem)> {
    let protocol = entry.protocol;
    if !protocol.is_tls() {
        let given = [
            ("cert_file", entry.cert_file.is_some()),
            ("key_file", entry.key_file.is_some()),
            ("ca_file", entry.ca_file.is_some()),
            ("require_client_cert", entry.require_client_cert.is_some()),
            ("use_identity_as_username", entry.use_identity_as_username.is_some()),
        ];
        return match given.into_iter().find(|(_, set)| *set) {
            Some((key, _)) => Err((key, Problem::TlsOnly(protocol.as_str()))),
            None => Ok(None),
        };
    }
    let cert_file = entry
        .cert_file
        .clone()
        .ok_or(("cert_file", Problem::Missing(protocol.as_str())))?;
    let key_file = entry
        .key_file
        .clone()
        .ok_or(("key_file", Problem::Missing(protocol.as_str())))?;
    let use_identity_as_username = entry.use_identity_as_username.unwrap_or(false);
    // The identity comes from a verified certificate, so taking it as the user name implies requiring one.
    let require_client_cert = entry.require_client_cert.unwrap_or(use_identity_as_username);
    if use_identity_as_username && !require_client_cert {
        return Err(("use_identity_as_username", Problem::IdentityNeedsClientCert));
    }
    if require_client_cert && entry.ca_file.is_none() {
        return Err(("ca_file", Problem::ClientCertNeedsCa));
    }
    Ok(Some(TlsFiles {
        cert_file,
        key_file,
        ca_file: entry.ca_file.clone(),
        require_client_cert,
        use_identity_as_username,
    }))
}

fn listener_ws_path(entry: &ListenerFile) -> Result<Option<String>, (&'static str, Problem)> {
    match (&entry.ws_path, entry.protocol.is_websocket()) {
        (Some(_), false) => Err(("ws_path", Problem::WebSocketOnly(entry.protocol.as_str()))),
        (None, false) => Ok(None),
        (None, true) => Ok(Some(DEFAULT_WS_PATH.to_string())),
        (Some(path), true) if path.starts_with('/') && !path.contains(char::is_whitespace) => Ok(Some(path.clone())),
        (Some(path), true) => Err(("ws_path", Problem::BadWsPath(path.clone()))),
    }
}

impl Settings {
    /// Where the authenticator is loaded from, now and on SIGHUP.
    pub fn auth_source(&self) -> crate::auth::AuthSource {
        crate::auth::AuthSource {
            password_file: self.password_file.clone(),
            acl_file: self.acl_file.clone(),
            allow_anonymous: self.listeners.iter().map(|l| l.allow_anonymous).collect(),
            trusted_username: self
                .listeners
                .iter()
                .map(|l| l.tls.as_ref().is_some_and(|t| t.use_identity_as_username))
                .collect(),
        }
    }

    /// The effective configuration as a TOML document that `parse_file` accepts back.
    pub fn to_toml(&self) -> String {
        let mut root = toml::Table::new();
        let listeners = self
            .listeners
            .iter()
            .map(|l| {
                let mut t = toml::Table::new();
                t.insert("address".into(), toml::Value::String(l.address.to_string()));
                t.insert("protocol".into(), toml::Value::String(l.protocol.as_str().into()));
                t.insert("allow_anonymous".into(), toml::Value::Boolean(l.allow_anonymous));
                if let Some(tls) = &l.tls {
                    let path = |p: &Path| toml::Value::String(p.display().to_string());
                    t.insert("cert_file".into(), path(&tls.cert_file));
                    t.insert("key_file".into(), path(&tls.key_file));
                    if let Some(ca) = &tls.ca_file {
                        t.insert("ca_file".into(), path(ca));
                    }
                    t.insert(
                        "require_client_cert".into(),
                        toml::Value::Boolean(tls.require_client_cert),
                    );
                    t.insert(
                        "use_identity_as_username".into(),
                        toml::Value::Boolean(tls.use_identity_as_username),
                    );
                }
                if let Some(ws_path) = &l.ws_path {
                    t.insert("ws_path".into(), toml::Value::String(ws_path.clone()));
                }
                toml::Value::Table(t)
            })
            .collect();
        root.insert(
            "data_dir".into(),
            toml::Value::String(self.data_dir.display().to_string()),
        );
        if let Some(log_file) = &self.log_file {
            root.insert("log_file".into(), toml::Value::String(log_file.display().to_string()));
        }
        root.insert("log_level".into(), toml::Value::String(self.log_level.as_str().into()));
        root.insert("sync".into(), toml::Value::String(self.sync.as_str().into()));
        root.insert(
            "sync_interval_ms".into(),
            toml::Value::Integer(i64::try_from(self.sync_interval_ms).unwrap_or(i64::MAX)),
        );
        if let Some(path) = &self.password_file {
            root.insert("password_file".into(), toml::Value::String(path.display().to_string()));
        }
        if let Some(path) = &self.acl_file {
            root.insert("acl_file".into(), toml::Value::String(path.display().to_string()));
        }
        root.insert("io".into(), toml::Value::String(self.io.as_str().into()));
        root.insert(
            "io_coalesce_us".into(),
            toml::Value::Integer(i64::try_from(self.io_coalesce.as_micros()).unwrap_or(i64::MAX)),
        );
        root.insert("listeners".into(), toml::Value::Array(listeners));
        if let Some(address) = self.http_listen {
            let mut http = toml::Table::new();
            http.insert("listen".into(), toml::Value::String(address.to_string()));
            root.insert("http".into(), toml::Value::Table(http));
        }
        root.insert("limits".into(), toml::Value::Table(limits::to_table(&self.limits)));
        if let Some(cluster) = &self.cluster {
            root.insert("cluster".into(), toml::Value::Table(cluster.to_toml()));
        }
        if !self.bridges.is_empty() {
            root.insert("bridges".into(), bridge::to_toml(&self.bridges));
        }
        let seed = match self.seed {
            Some(seed) => format!("# seed = {seed} (from --seed; flag only)\n"),
            None => "# seed: from the operating system's randomness (set with --seed)\n".to_string(),
        };
        // Table serialization of plain values cannot fail; should it ever, an empty document is still valid TOML.
        format!("{seed}{}", toml::to_string(&root).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests;
