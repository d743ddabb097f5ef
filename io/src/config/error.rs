//! Configuration errors, located precisely enough that an operator can go straight to the offending line.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A position in the TOML file (1-based line and column).
    File { path: PathBuf, line: usize, col: usize },
    /// A command-line flag, e.g. `--max-packet-size`.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, col } => write!(f, "{}:{line}:{col}", path.display()),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why a value was rejected after it parsed (the TOML types were right but the value is not usable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Zero where the limit must be positive.
    Zero,
    /// A number above the largest allowed value.
    TooLarge { max: u64 },
    /// Not an `IP:PORT` socket address.
    BadAddress(String),
    /// The listener list is empty, so the broker could never accept a client.
    NoListeners,
    /// A key that a listener of this protocol needs is absent (the protocol is named).
    Missing(&'static str),
    /// A TLS key on a listener of this (non-TLS) protocol.
    TlsOnly(&'static str),
    /// A WebSocket key on a listener of this (non-WebSocket) protocol.
    WebSocketOnly(&'static str),
    /// `require_client_cert` without a CA to verify client certificates against.
    ClientCertNeedsCa,
    /// `use_identity_as_username` with `require_client_cert = false`.
    IdentityNeedsClientCert,
    /// A WebSocket path that is not an absolute HTTP path.
    BadWsPath(String),
    /// An empty or overlong cluster id.
    BadClusterId(String),
    /// Two `[cluster] peers` entries with the same id or address.
    DuplicatePeer(String),
    /// A voter count other than 3 or 5.
    VoterCount(usize),
    /// `node_id` is not among the `peers`.
    NotAPeer(u64),
    /// The heartbeat interval is not shorter than the election timeout.
    HeartbeatNotBelowElection { heartbeat: u64, election: u64 },
    /// A cluster node must keep its Raft log on disk.
    ClusterNeedsDisk,
    /// A `[[bridges]]` value that cannot be used (the reason says why).
    Bridge(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Zero => write!(f, "must be greater than 0"),
            Problem::TooLarge { max } => write!(f, "must be at most {max}"),
            Problem::BadAddress(text) => write!(
                f,
                "invalid socket address {text:?} (expected IP:PORT, e.g. 127.0.0.1:1883)"
            ),
            Problem::NoListeners => write!(f, "at least one listener is required"),
            Problem::Missing(protocol) => write!(f, "is required for protocol \"{protocol}\""),
            Problem::TlsOnly(protocol) => write!(
                f,
                "applies only to TLS listeners (protocol \"mqtts\" or \"wss\"), not \"{protocol}\""
            ),
            Problem::WebSocketOnly(protocol) => write!(
                f,
                "applies only to WebSocket listeners (protocol \"ws\" or \"wss\"), not \"{protocol}\""
            ),
            Problem::ClientCertNeedsCa => write!(f, "is required when client certificates are required"),
            Problem::IdentityNeedsClientCert => write!(f, "needs require_client_cert = true"),
            Problem::BadWsPath(path) => write!(f, "invalid WebSocket path {path:?} (expected e.g. \"/mqtt\")"),
            Problem::BadClusterId(id) => write!(
                f,
                "invalid cluster id {id:?} (expected 1 to {} bytes)",
                super::cluster::MAX_CLUSTER_ID_LEN
            ),
            Problem::DuplicatePeer(what) => write!(f, "{what} appears twice among the peers"),
            Problem::VoterCount(n) => write!(
                f,
                "lists {n} voter(s); a cluster starts with 3 or 5 (this node included; a node that joins a running \
                 cluster with `join = true` lists the members and itself)"
            ),
            Problem::NotAPeer(id) => write!(f, "{id} is not the id of any entry of cluster.peers"),
            Problem::HeartbeatNotBelowElection { heartbeat, election } => write!(
                f,
                "heartbeat_ticks ({heartbeat}) must be less than election_ticks ({election})"
            ),
            Problem::Bridge(why) => write!(f, "{why}"),
            Problem::ClusterNeedsDisk => write!(
                f,
                "cannot be \"none\" with [cluster]: a node must keep its Raft log on disk to vote and acknowledge"
            ),
        }
    }
}

/// Every way loading the configuration can fail. All of them mean exit code 2.
#[derive(Debug)]
pub enum ConfigError {
    /// The file named by `--config` could not be read.
    Read { path: PathBuf, source: std::io::Error },
    /// The TOML did not parse or did not match the schema (bad type, unknown key, unknown variant, ...).
    Syntax {
        origin: Origin,
        key: Option<String>,
        message: String,
    },
    /// A value parsed but is not acceptable.
    Invalid {
        origin: Origin,
        key: String,
        problem: Problem,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Syntax {
                origin,
                key: Some(key),
                message,
            } => write!(f, "{origin}: key `{key}`: {message}"),
            ConfigError::Syntax {
                origin,
                key: None,
                message,
            } => write!(f, "{origin}: {message}"),
            ConfigError::Invalid { origin, key, problem } => write!(f, "{origin}: key `{key}`: {problem}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The 1-based line and column of byte offset `at` in `text` (clamped to the text).
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    // A span may in theory land inside a multi-byte character; back off to a boundary rather than panic.
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The dotted key a span points into, worked out from the source text: the nearest `[table]` header above the
/// span's line, plus the bare key on that line (the text before `=`). toml's error does not expose its key path,
/// and an error naming the key is what the operator needs.
pub fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let (line_no, _) = line_col(text, span.start);
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no.checked_sub(1)?)?.trim();
    let table = lines[..line_no - 1].iter().rev().find_map(|l| table_header(l.trim()));
    let own_header = table_header(line);
    let key = match (own_header, line.split_once('=')) {
        (Some(header), _) => return Some(header),
        (None, Some((key, _))) => key.trim().trim_matches('"').to_string(),
        // A span on a continuation line of a multi-line value: the table is the best we can say.
        (None, None) => return table,
    };
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key,
    })
}

fn table_header(line: &str) -> Option<String> {
    let inner = line
        .strip_prefix("[[")
        .and_then(|l| l.split_once("]]"))
        .map(|(name, _)| name);
    let inner = inner.or_else(|| {
        line.strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .map(|(name, _)| name)
    });
    inner.map(|name| name.trim().to_string())
}

/// Turn a toml deserialization error into a located [`ConfigError`].
pub fn from_toml(path: &std::path::Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let span = err.span().unwrap_or(0..0);
    let (line, col) = line_col(text, span.start);
    ConfigError::Syntax {
        origin: Origin::File {
            path: path.to_path_buf(),
            line,
            col,
        },
        key: key_at(text, &span),
        message: err.message().trim().to_string(),
    }
}

/// The origin of a spanned file value.
pub fn file_origin(path: &std::path::Path, text: &str, span: Range<usize>) -> Origin {
    let (line, col) = line_col(text, span.start);
    Origin::File {
        path: path.to_path_buf(),
        line,
        col,
    }
}
