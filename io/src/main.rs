//! `mqtt-broker`: parse the configuration, set up logging, run the driver.
//!
//! Exit codes: 0 after a clean shutdown (or a successful `--check-config`), 2 for a bad configuration, 1 for any
//! failure at run time (address in use, data directory not creatable, ...).

use clap::Parser;
use mqtt_core::broker::Broker;
use mqtt_io::auth::passwd::{self as pwfile, PasswdError};
use mqtt_io::auth::{prompt, FileAuthenticator, Verifier};
use mqtt_io::bridge::{BridgeTrust, Bridged};
use mqtt_io::config::{self, Cli, Command, Settings, Sync};
use mqtt_io::driver::Driver;
use mqtt_io::storage::{Storage, SyncMode};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const BAD_CONFIG: u8 = 2;
const RUNTIME_FAILURE: u8 = 1;

fn main() -> ExitCode {
    // clap prints its own message and exits with 2 on bad flags (0 for --help/--version).
    let cli = Cli::parse();
    if let Some(Command::Passwd {
        file,
        user,
        password,
        delete,
    }) = &cli.command
    {
        return passwd(file, user, password.as_deref(), *delete);
    }
    let settings = match config::load(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("mqtt-broker: configuration error: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    // The password and ACL files are configuration too: a bad one stops the broker from starting.
    let authenticator = match settings.auth_source().load() {
        Ok(authenticator) => authenticator,
        Err(e) => {
            eprintln!("mqtt-broker: configuration error: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    // So are the certificates and keys of TLS listeners (the driver loads them again when it binds).
    if let Err(e) = mqtt_io::tls::load_listeners(&settings.listeners) {
        eprintln!("mqtt-broker: configuration error: {e}");
        return ExitCode::from(BAD_CONFIG);
    }
    if settings.cluster.is_some() {
        if let Some(key) = cluster_unsupported(&settings) {
            eprintln!("mqtt-broker: configuration error: {key} is not available with [cluster] yet");
            return ExitCode::from(BAD_CONFIG);
        }
    }
    if let Some(Command::Cluster { action }) = &cli.command {
        return cluster_command(&settings, action.clone());
    }
    if cli.check_config {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    let result = match &settings.cluster {
        Some(cluster) => run_cluster(&settings, cluster, authenticator),
        None => run(&settings, authenticator),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            // The log may be a file; the operator starting the broker by hand looks at the terminal.
            if settings.log_file.is_some() {
                eprintln!("mqtt-broker: {message}");
            }
            ExitCode::from(RUNTIME_FAILURE)
        }
    }
}

/// Why the broker stopped with exit code 1.
#[derive(Debug)]
enum RunError {
    Log(mqtt_io::log::LogError),
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    Driver(mqtt_io::driver::DriverError),
    Storage(mqtt_io::storage::StorageError),
    Verifier(std::io::Error),
    Seed(getrandom::Error),
    Cluster(String),
    /// A bridge's TLS files could not be used.
    Bridge(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Log(e) => write!(f, "{e}"),
            RunError::DataDir { path, source } => {
                write!(f, "cannot create data directory {}: {source}", path.display())
            }
            RunError::Driver(e) => write!(f, "{e}"),
            RunError::Bridge(e) => write!(f, "{e}"),
            RunError::Storage(e) => write!(f, "cannot recover the data directory: {e}"),
            RunError::Verifier(e) => write!(f, "cannot start the password verifier threads: {e}"),
            RunError::Seed(e) => write!(
                f,
                "cannot read the operating system's randomness for the broker's seed: {e}"
            ),
            RunError::Cluster(e) => write!(f, "cannot recover the cluster data directory: {e}"),
        }
    }
}

fn run(settings: &Settings, authenticator: FileAuthenticator) -> Result<(), RunError> {
    let logger = match mqtt_io::log::init(settings.log_level, settings.log_file.as_deref()) {
        Ok(logger) => logger,
        // Only a log file can fail to open, and main reports failures on stderr when logging to a file.
        Err(e) => return Err(RunError::Log(e)),
    };
    report_open_file_limit(settings.limits.max_connections as u64);
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| RunError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    let seed = match settings.seed {
        Some(seed) => seed,
        None => seed_from_os().map_err(RunError::Seed)?,
    };
    // Passwords are verified on these threads, not on the event loop.
    let max_wait = Duration::from_millis(settings.limits.connect_timeout_ms);
    let verifier = Verifier::start(Verifier::default_threads(), max_wait).map_err(RunError::Verifier)?;
    let authenticator = authenticator.with_verifier(verifier.queue());
    // Bridges connect to the broker in memory and are let in by this wrapper (see mqtt_io::bridge).
    let local_ids = Bridged::<Broker>::local_ids(&settings.bridges);
    let authenticator = BridgeTrust::new(Box::new(authenticator), local_ids);
    let mut broker = Broker::with_authenticator(settings.limits.clone(), seed, Box::new(authenticator));
    let storage = open_storage(settings, &mut broker)?;
    let broker = Bridged::new(broker, &settings.bridges, settings.limits.max_packet_size).map_err(RunError::Bridge)?;
    let mut driver = Driver::bind(settings, broker, Some(logger))
        .map_err(RunError::Driver)?
        .reload_auth_from(settings.auth_source())
        .with_verifier(verifier)
        .map_err(RunError::Driver)?;
    if let Some(storage) = storage {
        driver = driver.with_storage(storage);
    }
    let http = match settings.http_listen {
        Some(address) => Some(driver.serve_http(address).map_err(RunError::Driver)?),
        None => None,
    };
    let addrs: Vec<String> = driver.local_addrs().iter().map(|a| a.to_string()).collect();
    log::info!(
        "mqtt-broker {} starting: listeners [{}], data dir {}, {}",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
        settings.data_dir.display(),
        seed_note(settings.seed)
    );
    log_listeners(settings, &addrs);
    if let Some(address) = http {
        log::info!("metrics on http://{address}/metrics, health on http://{address}/health");
    }
    driver.run().map_err(RunError::Driver)
}

/// The seed keys the hash maps and draws assigned client identifiers: a secret unless the operator chose it.
fn seed_note(seed: Option<u64>) -> String {
    match seed {
        Some(seed) => format!("seed {seed} (from --seed: hash keys and assigned client ids are predictable)"),
        None => "seed from the operating system's randomness (not logged)".to_string(),
    }
}

fn log_listeners(settings: &Settings, addrs: &[String]) {
    for (listener, addr) in settings.listeners.iter().zip(addrs) {
        let anonymous = if listener.allow_anonymous {
            "anonymous allowed"
        } else {
            "anonymous refused"
        };
        let path = listener
            .ws_path
            .as_deref()
            .map_or(String::new(), |p| format!(" path {p}"));
        let identity = match &listener.tls {
            Some(tls) if tls.use_identity_as_username => ", client certificate name as user name",
            Some(tls) if tls.require_client_cert => ", client certificate required",
            _ => "",
        };
        log::info!(
            "listening on {addr} ({}{path}, {anonymous}{identity})",
            listener.protocol.as_str()
        );
    }
}

/// The first setting a cluster node cannot honour yet, which must not be silently ignored.
fn cluster_unsupported(settings: &Settings) -> Option<&'static str> {
    if !settings.bridges.is_empty() {
        return Some("[[bridges]]");
    }
    None
}

/// One node of a Raft cluster: the Raft log in the data directory, the links to the other nodes, the broker on the
/// leader.
fn run_cluster(
    settings: &Settings,
    cluster: &config::ClusterSettings,
    authenticator: FileAuthenticator,
) -> Result<(), RunError> {
    use mqtt_io::cluster::node as cluster_node;
    let logger = mqtt_io::log::init(settings.log_level, settings.log_file.as_deref()).map_err(RunError::Log)?;
    report_open_file_limit(settings.limits.max_connections as u64);
    let seed = match settings.seed {
        Some(seed) => seed,
        None => seed_from_os().map_err(RunError::Seed)?,
    };
    if settings.sync == Sync::Interval {
        log::warn!(
            "sync = interval does not apply to a cluster node: its Raft log is synced before every acknowledgement"
        );
    }
    if single_broker_files(&settings.data_dir) {
        log::warn!(
            "{} holds a single broker's log and snapshots, which a cluster node neither reads nor changes",
            settings.data_dir.display()
        );
    }
    let mut config = cluster_node::node_config(cluster, settings.limits.clone(), seed);
    // Every broker this node builds as leader checks the password and ACL files, for its own clients and for those
    // the followers relay (by the follower's listener index: nodes list their listeners in the same order).
    // Uncached passwords are verified on the verifier's threads, not on the loop that also keeps the Raft group's
    // heartbeats: the verdict comes back as `AuthDecided` for the connection id, which the leader's broker knows
    // whether the client is its own or relayed. A verdict that arrives after a leader change finds the
    // connection closed (every client is closed at a failover) and is ignored.
    let max_wait = Duration::from_millis(settings.limits.connect_timeout_ms);
    let verifier = Verifier::start(Verifier::default_threads(), max_wait).map_err(RunError::Verifier)?;
    let authenticator = authenticator.with_verifier(verifier.queue());
    config.authenticator = Some(mqtt_cluster::SharedAuthenticator::new(Box::new(authenticator)));
    let (core, recovered) = cluster_node::open(&settings.data_dir, cluster, config, settings.repair)
        .map_err(|e| RunError::Cluster(e.to_string()))?;
    log::info!(
        "cluster {:?}: node {} of {:?}, term {}, commit {}, snapshot at {}, {} log entries recovered{}",
        cluster.cluster_id,
        cluster.node_id,
        cluster.voter_ids(),
        recovered.hard_state.term,
        recovered.hard_state.commit,
        recovered.snapshot.get_metadata().index,
        recovered.entries.len(),
        if recovered.truncated_bytes > 0 {
            format!(" ({} damaged bytes truncated)", recovered.truncated_bytes)
        } else {
            String::new()
        }
    );
    let mut driver = Driver::bind(settings, core, Some(logger))
        .map_err(RunError::Driver)?
        .reload_auth_from(settings.auth_source())
        .with_verifier(verifier)
        .map_err(RunError::Driver)?;
    let http = match settings.http_listen {
        Some(address) => Some(driver.serve_http(address).map_err(RunError::Driver)?),
        None => None,
    };
    let addrs: Vec<String> = driver.local_addrs().iter().map(|a| a.to_string()).collect();
    log::info!(
        "mqtt-broker {} starting as cluster node {}: listeners [{}], nodes on {}, data dir {}, {}",
        env!("CARGO_PKG_VERSION"),
        cluster.node_id,
        addrs.join(", "),
        cluster.listen,
        settings.data_dir.display(),
        seed_note(settings.seed)
    );
    log_listeners(settings, &addrs);
    if let Some(address) = http {
        log::info!("metrics on http://{address}/metrics, health on http://{address}/health");
    }
    driver.run().map_err(RunError::Driver)
}

/// Whether `dir` holds the files of a single broker (`wal-*.log`, `snapshot-*.snap`).
fn single_broker_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("wal-") || name.starts_with("snapshot-")
        })
    })
}

/// Raises the open-file limit as far as allowed and says so when it bounds connections below `max_connections`.
fn report_open_file_limit(max_connections: u64) {
    match mqtt_io::fd_limit::raise_to_hard_limit() {
        Ok(limit) => {
            if limit.soft != limit.before {
                log::info!("open-file limit raised from {} to {}", limit.before, limit.soft);
            }
            if limit.connections() < max_connections {
                log::warn!(
                    "the open-file limit ({}) allows about {} connections, fewer than max_connections ({max_connections}); \
                     raise the hard limit (ulimit -Hn, LimitNOFILE= in a systemd unit) to hold more",
                    limit.soft,
                    limit.connections()
                );
            }
        }
        Err(e) => log::warn!("cannot read or raise the open-file limit: {e}"),
    }
}

/// Recovers the data directory into `broker` and returns the storage to keep writing to (none with `sync = none`).
fn open_storage(settings: &Settings, broker: &mut Broker) -> Result<Option<Storage>, RunError> {
    let mode = match settings.sync {
        Sync::None => {
            log::warn!("sync = none: nothing is written to disk; sessions and retained messages die with the process");
            return Ok(None);
        }
        Sync::Always => SyncMode::Always,
        Sync::Interval => SyncMode::Interval(Duration::from_millis(settings.sync_interval_ms)),
    };
    let now = mqtt_io::driver::wall_clock_now();
    // Retained messages go straight into the broker's tree as they are read (issue #18: a million of them were
    // held twice, as an image map and the tree built from it, and the freed map left the heap full of holes).
    let (storage, image, recovery) = Storage::open_into(
        &settings.data_dir,
        mode,
        settings.repair,
        &mut broker.retained_recovery(now),
    )
    .map_err(RunError::Storage)?;
    let sessions = image.sessions.len();
    broker.restore(now, image);
    let retained = broker.footprint().retained;
    release_freed_memory();
    log::info!(
        "recovered {sessions} session(s) and {retained} retained message(s) from {} snapshot and {} log record(s) in {} ms{}",
        recovery.snapshot_records,
        recovery.log_records,
        recovery.elapsed.as_millis(),
        if recovery.truncated_bytes > 0 {
            format!(" ({} damaged bytes truncated)", recovery.truncated_bytes)
        } else {
            String::new()
        }
    );
    Ok(Some(storage))
}

/// Gives the memory the recovered image occupied back to the system. It was freed as the broker took its
/// contents over, but glibc keeps freed memory below live allocations resident: after recovering a million retained
/// messages that was hundreds of MiB the broker would never use again (bench/retained_memory.sh).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A secret seed from the operating system's randomness (getrandom): it keys the hash maps of client-chosen names
/// and draws assigned client identifiers, so it must not be guessable from the start time or the pid.
fn seed_from_os() -> Result<u64, getrandom::Error> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// `mqtt-broker passwd FILE USER [--password PW | --delete]`: exit 0 on success, 1 on failure.
fn passwd(file: &Path, user: &str, password: Option<&str>, delete: bool) -> ExitCode {
    match edit_password_file(file, user, password, delete) {
        Ok(message) => {
            eprintln!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("mqtt-broker passwd: {message}");
            ExitCode::from(RUNTIME_FAILURE)
        }
    }
}

fn edit_password_file(file: &Path, user: &str, password: Option<&str>, delete: bool) -> Result<String, String> {
    pwfile::check_username(user).map_err(|e| e.to_string())?;
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !delete => String::new(),
        Err(source) => {
            let error = PasswdError::Read {
                path: file.to_path_buf(),
                source,
            };
            return Err(error.to_string());
        }
    };
    // Refuse to edit a file the broker would not load: the mistake is better fixed by hand first.
    pwfile::PasswordFile::parse(file, &text).map_err(|e| e.to_string())?;
    if delete {
        let (text, found) = pwfile::remove_user(&text, user);
        if !found {
            return Err(format!("user {user:?} is not in {}", file.display()));
        }
        pwfile::write_private(file, &text).map_err(|e| e.to_string())?;
        return Ok(format!("removed user {user:?} from {}", file.display()));
    }
    let password = match password {
        Some(password) => password.to_string(),
        None => prompt::read_password().map_err(|e| e.to_string())?,
    };
    let phc = pwfile::hash(password.as_bytes()).map_err(|e| e.to_string())?;
    pwfile::write_private(file, &pwfile::set_user(&text, user, &phc)).map_err(|e| e.to_string())?;
    Ok(format!("set password of user {user:?} in {}", file.display()))
}

/// `mqtt-broker cluster status`: every member's view, asked over its node-to-node port.
fn cluster_command(settings: &Settings, action: config::ClusterAction) -> ExitCode {
    let Some(cluster) = &settings.cluster else {
        eprintln!("mqtt-broker: the configuration has no [cluster] table (pass the --config of a cluster node)");
        return ExitCode::from(BAD_CONFIG);
    };
    match action {
        config::ClusterAction::Status => {
            let members: Vec<_> = cluster.peers.iter().map(|p| (p.id, p.address)).collect();
            print!("{}", mqtt_io::cluster::status::report(&cluster.cluster_id, &members));
            ExitCode::SUCCESS
        }
        config::ClusterAction::AddNode { id, address } => {
            let address = address.to_string();
            member_change(cluster, mqtt_cluster::MemberChange::Add { id, address })
        }
        config::ClusterAction::RemoveNode { id } => member_change(cluster, mqtt_cluster::MemberChange::Remove { id }),
    }
}

/// `mqtt-broker cluster add-node` / `remove-node`: asks the leader, waits until the change is applied.
fn member_change(cluster: &config::ClusterSettings, change: mqtt_cluster::MemberChange) -> ExitCode {
    let members: Vec<_> = cluster.peers.iter().map(|p| (p.id, p.address)).collect();
    match mqtt_io::cluster::admin::run(&cluster.cluster_id, &members, &change) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("mqtt-broker: cluster membership change failed: {why}");
            ExitCode::FAILURE
        }
    }
}
