use super::*;
use clap::Parser;

fn cli(args: &[&str]) -> Cli {
    let mut all = vec!["mqtt-broker"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).expect("test arguments parse")
}

fn from_text(text: &str, args: &[&str]) -> Result<Settings, ConfigError> {
    let path = Path::new("test.toml");
    let file = parse_file(path, text)?;
    resolve(&file, Some(&Source { path, text }), &cli(args))
}

#[test]
fn no_arguments_listen_on_localhost_1883_with_default_limits() {
    let settings = load(&cli(&[])).unwrap();
    assert_eq!(
        settings.listeners,
        vec![Listener::plain(DEFAULT_LISTEN.parse().unwrap())]
    );
    assert_eq!(settings.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(settings.log_level, LogLevel::Info);
    assert_eq!(settings.log_file, None);
    // Durable by default: records are written and synced before acknowledgements.
    assert_eq!(settings.sync, Sync::Always);
    assert_eq!(
        settings.limits,
        Config {
            persistence: true,
            ..Config::default()
        }
    );
    assert_eq!(settings.seed, None);
}

#[test]
fn empty_file_gives_defaults() {
    let settings = from_text("", &[]).unwrap();
    assert_eq!(settings, load(&cli(&[])).unwrap());
}

#[test]
fn file_values_override_defaults() {
    let text = r#"
data_dir = "/var/lib/mqtt"
log_file = "/var/log/mqtt.log"
log_level = "debug"

[[listeners]]
address = "0.0.0.0:1883"
protocol = "mqtt"

[[listeners]]
address = "[::1]:1884"

[limits]
max_packet_size = 65536
maximum_qos = 1
retain_available = false
connect_timeout_ms = 500
"#;
    let s = from_text(text, &[]).unwrap();
    assert_eq!(s.listeners.len(), 2);
    assert_eq!(s.listeners[1].address, "[::1]:1884".parse().unwrap());
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/mqtt"));
    assert_eq!(s.log_file, Some(PathBuf::from("/var/log/mqtt.log")));
    assert_eq!(s.log_level, LogLevel::Debug);
    assert_eq!(s.limits.max_packet_size, 65536);
    assert_eq!(s.limits.maximum_qos, 1);
    assert!(!s.limits.retain_available);
    assert_eq!(s.limits.connect_timeout_ms, 500);
    // Untouched keys keep the core's defaults.
    assert_eq!(s.limits.receive_maximum, Config::default().receive_maximum);
}

#[test]
fn flags_override_file() {
    let text = "data_dir = \"a\"\nlog_level = \"warn\"\n[[listeners]]\naddress = \"127.0.0.1:1\"\n[limits]\nmax_inflight = 7\nshared_subscriptions = true\n";
    let s = from_text(
        text,
        &[
            "--data-dir",
            "b",
            "--log-level",
            "trace",
            "--listen",
            "127.0.0.1:2",
            "--listen",
            "127.0.0.1:3",
            "--max-inflight",
            "9",
            "--shared-subscriptions",
            "false",
            "--seed",
            "42",
        ],
    )
    .unwrap();
    assert_eq!(s.data_dir, PathBuf::from("b"));
    assert_eq!(s.log_level, LogLevel::Trace);
    let addrs: Vec<_> = s.listeners.iter().map(|l| l.address.port()).collect();
    assert_eq!(addrs, vec![2, 3], "--listen replaces the file's listeners");
    assert_eq!(s.limits.max_inflight, 9);
    assert!(!s.limits.shared_subscriptions);
    assert_eq!(s.seed, Some(42));
}

#[test]
fn unknown_top_level_key_names_key_and_line() {
    let err = from_text("log_level = \"info\"\nfrobnicate = 3\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("test.toml:2:"), "{msg}");
    assert!(msg.contains("frobnicate"), "{msg}");
}

#[test]
fn unknown_limit_key_names_table_key_and_line() {
    let err = from_text("[limits]\nmax_packet_size = 10\nmax_pakcet_size = 10\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("test.toml:3:"), "{msg}");
    assert!(msg.contains("limits.max_pakcet_size"), "{msg}");
}

#[test]
fn bad_type_names_key_and_line() {
    let err = from_text("\n[limits]\nmax_inflight = \"lots\"\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("test.toml:3:"), "{msg}");
    assert!(msg.contains("limits.max_inflight"), "{msg}");
}

#[test]
fn out_of_range_integer_is_rejected() {
    let err = from_text("[limits]\nreceive_maximum = 70000\n", &[]).unwrap_err();
    assert!(err.to_string().contains("limits.receive_maximum"), "{err}");
}

#[test]
fn zero_where_zero_is_invalid_names_key_and_position() {
    let err = from_text("[limits]\nmax_packet_size = 0\n", &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.toml:2:19: key `limits.max_packet_size`: must be greater than 0"
    );
}

#[test]
fn zero_allowed_where_it_means_disabled() {
    let s = from_text(
        "[limits]\nsys_interval = 0\nmax_topic_alias = 0\nmax_keep_alive = 0\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.limits.sys_interval, 0);
}

#[test]
fn maximum_qos_above_two_is_rejected() {
    let err = from_text("[limits]\nmaximum_qos = 3\n", &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.toml:2:15: key `limits.maximum_qos`: must be at most 2"
    );
    let err = resolve(&FileConfig::default(), None, &cli(&["--maximum-qos", "3"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "flag --maximum-qos: key `limits.maximum_qos`: must be at most 2"
    );
}

#[test]
fn invalid_listener_address_names_key_and_line() {
    let err = from_text("[[listeners]]\naddress = \"localhost:x\"\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("test.toml:2:11: key `listeners.address`"), "{msg}");
}

#[test]
fn unknown_protocol_is_rejected() {
    let err = from_text("[[listeners]]\naddress = \"127.0.0.1:1\"\nprotocol = \"quic\"\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("test.toml:3:"), "{msg}");
    assert!(msg.contains("listeners.protocol"), "{msg}");
}

#[test]
fn empty_listener_list_is_rejected() {
    let err = from_text("listeners = []\n", &[]).unwrap_err();
    assert!(err.to_string().contains("at least one listener"), "{err}");
}

#[test]
fn bad_log_level_is_rejected() {
    let err = from_text("log_level = \"loud\"\n", &[]).unwrap_err();
    assert!(err.to_string().starts_with("test.toml:1:"), "{err}");
    assert!(err.to_string().contains("log_level"), "{err}");
}

#[test]
fn zero_from_flag_is_rejected() {
    let err = resolve(&FileConfig::default(), None, &cli(&["--max-connections", "0"])).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            origin: Origin::Flag("--max-connections"),
            problem: Problem::Zero,
            ..
        }
    ));
}

#[test]
fn missing_file_is_an_error() {
    let err = load(&cli(&["--config", "/nonexistent/mqtt.toml"])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

#[test]
fn effective_config_round_trips_through_toml() {
    let s = from_text(
        "log_file = \"x.log\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[limits]\nmax_inflight = 3\n",
        &["--seed", "5"],
    )
    .unwrap();
    let text = s.to_toml();
    let mut again = from_text(&text, &[]).unwrap();
    again.seed = Some(5);
    assert_eq!(again, s, "{text}");
}

#[test]
fn example_file_at_repo_root_is_valid_and_all_defaults() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../mqtt-broker.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    let file = parse_file(path, &text).unwrap();
    let s = resolve(&file, Some(&Source { path, text: &text }), &cli(&[])).unwrap();
    assert_eq!(s, load(&cli(&[])).unwrap());
    // Uncommenting every setting must still give the defaults: the example documents them.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let file = parse_file(path, &uncommented).unwrap();
    let mut s = resolve(
        &file,
        Some(&Source {
            path,
            text: &uncommented,
        }),
        &cli(&[]),
    )
    .unwrap();
    assert_eq!(s.log_file.take(), Some(PathBuf::from("/var/log/mqtt-broker.log")));
    // The file paths are examples (their default is "none").
    assert_eq!(s.password_file.take(), Some(PathBuf::from("/etc/mqtt-broker/passwd")));
    assert_eq!(s.acl_file.take(), Some(PathBuf::from("/etc/mqtt-broker/acl")));
    // The HTTP listener is off by default; the example shows the usual address.
    assert_eq!(s.http_listen.take(), Some("127.0.0.1:9234".parse().unwrap()));
    // The TLS and WebSocket listeners are examples too, showing their keys' defaults.
    let examples = s.listeners.split_off(1);
    assert_eq!(examples.len(), 2);
    let tls = examples[0].tls.as_ref().expect("the mqtts example");
    assert_eq!(tls.cert_file, PathBuf::from("/etc/mqtt-broker/server.pem"));
    assert!(!tls.require_client_cert && !tls.use_identity_as_username);
    assert_eq!(examples[1].protocol, Protocol::Ws);
    assert_eq!(examples[1].ws_path.as_deref(), Some(DEFAULT_WS_PATH));
    assert_eq!(s, load(&cli(&[])).unwrap(), "the example documents the defaults");
}

#[test]
fn http_listen_comes_from_the_file_or_the_flag_and_a_bad_address_names_its_key() {
    let path = Path::new("b.toml");
    let text = "[http]\nlisten = \"127.0.0.1:9234\"\n";
    let file = parse_file(path, text).unwrap();
    let source = Source { path, text };
    let s = resolve(&file, Some(&source), &cli(&[])).unwrap();
    assert_eq!(s.http_listen, Some("127.0.0.1:9234".parse().unwrap()));
    assert!(
        s.to_toml().contains("[http]\nlisten = \"127.0.0.1:9234\""),
        "{}",
        s.to_toml()
    );
    let s = resolve(&file, Some(&source), &cli(&["--http-listen", "127.0.0.1:9999"])).unwrap();
    assert_eq!(s.http_listen, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!(load(&cli(&[])).unwrap().http_listen, None, "off by default");

    let text = "[http]\nlisten = \"nowhere\"\n";
    let file = parse_file(path, text).unwrap();
    let err = resolve(&file, Some(&Source { path, text }), &cli(&[])).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("http.listen") && message.contains("b.toml:2"),
        "{message}"
    );
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(error::line_col("ab\ncd", 0), (1, 1));
    assert_eq!(error::line_col("ab\ncd", 4), (2, 2));
    assert_eq!(error::line_col("ab", 99), (1, 3));
}

#[test]
fn anonymous_access_defaults_to_loopback_only_and_can_be_set() {
    let text = "[[listeners]]\naddress = \"127.0.0.1:1883\"\n[[listeners]]\naddress = \"0.0.0.0:1884\"\n\
                [[listeners]]\naddress = \"[::1]:1885\"\n[[listeners]]\naddress = \"0.0.0.0:1886\"\nallow_anonymous = true\n";
    let settings = from_text(text, &[]).unwrap();
    let allowed: Vec<bool> = settings.listeners.iter().map(|l| l.allow_anonymous).collect();
    assert_eq!(allowed, [true, false, true, true]);
    // The flag overrides every listener.
    let settings = from_text(text, &["--allow-anonymous", "false"]).unwrap();
    assert!(settings.listeners.iter().all(|l| !l.allow_anonymous));
    let settings = from_text("", &["--listen", "0.0.0.0:1883"]).unwrap();
    assert!(!settings.listeners[0].allow_anonymous);
}

#[test]
fn password_and_acl_files_come_from_file_or_flags() {
    let settings = from_text("password_file = \"/etc/pw\"\nacl_file = \"/etc/acl\"\n", &[]).unwrap();
    assert_eq!(settings.password_file, Some(PathBuf::from("/etc/pw")));
    assert_eq!(settings.acl_file, Some(PathBuf::from("/etc/acl")));
    let settings = from_text("password_file = \"/etc/pw\"\n", &["--password-file", "/tmp/pw"]).unwrap();
    assert_eq!(settings.password_file, Some(PathBuf::from("/tmp/pw")));
    let printed = settings.to_toml();
    assert!(printed.contains("password_file = \"/tmp/pw\""), "{printed}");
    assert_eq!(from_text(&printed, &[]).unwrap(), settings);
}

#[test]
fn passwd_subcommand_parses() {
    let parsed = cli(&["passwd", "users.pw", "alice", "-b", "pw"]);
    match parsed.command {
        Some(Command::Passwd {
            file,
            user,
            password,
            delete,
        }) => {
            assert_eq!(
                (file, user, password, delete),
                ("users.pw".into(), "alice".into(), Some("pw".into()), false)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["mqtt-broker", "passwd", "f", "u", "--delete", "-b", "x"]).is_err());
}

#[test]
fn sync_mode_comes_from_the_file_or_the_flag_and_switches_persistence() {
    let s = from_text("sync = \"interval\"\nsync_interval_ms = 250\n", &[]).unwrap();
    assert_eq!(
        (s.sync, s.sync_interval_ms, s.limits.persistence),
        (Sync::Interval, 250, true)
    );
    let s = from_text("sync = \"interval\"\n", &["--sync", "none"]).unwrap();
    assert_eq!((s.sync, s.limits.persistence), (Sync::None, false));
    assert!(from_text("sync = \"sometimes\"\n", &[]).is_err());
    // The effective configuration prints back to a file that gives the same settings.
    let s = from_text("sync = \"interval\"\nsync_interval_ms = 250\n", &["--repair"]).unwrap();
    let again = from_text(&s.to_toml(), &["--repair"]).unwrap();
    assert_eq!(again, s);
}

#[test]
fn tls_and_websocket_listeners_parse_with_their_keys() {
    let text = r#"
[[listeners]]
address = "0.0.0.0:8883"
protocol = "mqtts"
cert_file = "/etc/mqtt/server.pem"
key_file = "/etc/mqtt/server.key"
ca_file = "/etc/mqtt/ca.pem"
use_identity_as_username = true

[[listeners]]
address = "0.0.0.0:8080"
protocol = "ws"

[[listeners]]
address = "0.0.0.0:8443"
protocol = "wss"
cert_file = "s.pem"
key_file = "s.key"
ws_path = "/broker"
"#;
    let s = from_text(text, &[]).unwrap();
    let tls = s.listeners[0].tls.as_ref().expect("tls");
    assert_eq!(tls.cert_file, PathBuf::from("/etc/mqtt/server.pem"));
    assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/mqtt/ca.pem")));
    // The certificate's name is only trustworthy if a certificate is required.
    assert!(tls.require_client_cert && tls.use_identity_as_username);
    assert_eq!(s.listeners[0].ws_path, None);
    assert_eq!(s.listeners[1].tls, None);
    assert_eq!(s.listeners[1].ws_path.as_deref(), Some(DEFAULT_WS_PATH));
    assert_eq!(s.listeners[2].ws_path.as_deref(), Some("/broker"));
    assert!(!s.listeners[2].tls.as_ref().expect("tls").require_client_cert);
    // The printed configuration reads back the same.
    let again = from_text(&s.to_toml(), &[]).unwrap();
    assert_eq!(again.listeners, s.listeners);
    assert_eq!(again.auth_source().trusted_username, vec![true, false, false]);
}

#[test]
fn inconsistent_tls_and_websocket_keys_are_rejected_by_name() {
    let cases = [
        ("protocol = \"mqtts\"\nkey_file = \"k\"", "listeners.cert_file", "required"),
        ("protocol = \"wss\"\ncert_file = \"c\"", "listeners.key_file", "required"),
        ("cert_file = \"c\"", "listeners.cert_file", "only to TLS"),
        ("protocol = \"ws\"\nca_file = \"c\"", "listeners.ca_file", "only to TLS"),
        ("ws_path = \"/x\"", "listeners.ws_path", "only to WebSocket"),
        ("protocol = \"ws\"\nws_path = \"mqtt\"", "listeners.ws_path", "invalid WebSocket path"),
        (
            "protocol = \"mqtts\"\ncert_file = \"c\"\nkey_file = \"k\"\nrequire_client_cert = true",
            "listeners.ca_file",
            "required",
        ),
        (
            "protocol = \"mqtts\"\ncert_file = \"c\"\nkey_file = \"k\"\nca_file = \"a\"\nrequire_client_cert = false\nuse_identity_as_username = true",
            "listeners.use_identity_as_username",
            "require_client_cert",
        ),
    ];
    for (keys, key, problem) in cases {
        let text = format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{keys}\n");
        let msg = from_text(&text, &[]).unwrap_err().to_string();
        assert!(msg.starts_with("test.toml:2:"), "{msg}");
        assert!(
            msg.contains(&format!("key `{key}`")) && msg.contains(problem),
            "{keys}: {msg}"
        );
    }
}

const CLUSTER: &str = r#"
[cluster]
node_id = 2
cluster_id = "demo"
peers = [
  { id = 1, address = "127.0.0.1:7001" },
  { id = 2, address = "127.0.0.1:7002" },
  { id = 3, address = "127.0.0.1:7003" },
]
"#;

#[test]
fn no_cluster_table_is_a_single_broker() {
    assert_eq!(from_text("", &[]).unwrap().cluster, None);
}

#[test]
fn cluster_table_gives_voters_own_listen_address_and_default_timing() {
    let c = from_text(CLUSTER, &[]).unwrap().cluster.expect("cluster");
    assert_eq!((c.node_id, c.cluster_id.as_str()), (2, "demo"));
    assert_eq!(c.voter_ids(), [1, 2, 3]);
    assert_eq!(
        c.listen,
        "127.0.0.1:7002".parse().unwrap(),
        "defaults to the node's own peer address"
    );
    assert_eq!(c.others().map(|p| p.id).collect::<Vec<_>>(), [1, 3]);
    assert_eq!((c.tick.as_millis(), c.election_ticks, c.heartbeat_ticks), (100, 10, 2));
    let timed = format!("{CLUSTER}listen = \"0.0.0.0:7102\"\ntick_ms = 50\nelection_ticks = 20\nheartbeat_ticks = 4\n");
    let c = from_text(&timed, &[]).unwrap().cluster.expect("cluster");
    assert_eq!(c.listen, "0.0.0.0:7102".parse().unwrap());
    assert_eq!((c.tick.as_millis(), c.election_ticks, c.heartbeat_ticks), (50, 20, 4));
}

#[test]
fn cluster_held_output_bound_defaults_and_refuses_zero() {
    let c = from_text(CLUSTER, &[]).unwrap().cluster.expect("cluster");
    assert_eq!(c.max_held_bytes, mqtt_cluster::config::DEFAULT_MAX_HELD_BYTES);
    let set = format!("{CLUSTER}max_held_bytes = 4096\n");
    assert_eq!(
        from_text(&set, &[]).unwrap().cluster.expect("cluster").max_held_bytes,
        4096
    );
    let zero = format!("{CLUSTER}max_held_bytes = 0\n");
    let err = from_text(&zero, &[]).unwrap_err().to_string();
    assert!(err.contains("cluster.max_held_bytes"), "{err}");
}

#[test]
fn cluster_config_round_trips_through_toml() {
    let settings = from_text(CLUSTER, &[]).unwrap();
    let text = settings.to_toml();
    assert_eq!(from_text(&text, &[]).unwrap(), settings, "{text}");
}

/// Each mistake is reported with the file, the line of the offending value and the dotted key.
#[test]
fn bad_cluster_tables_name_file_line_and_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "node_id = 2",
            "node_id = 4",
            "cluster.node_id",
            "not the id of any entry",
        ),
        ("node_id = 2", "node_id = 0", "cluster.node_id", "greater than 0"),
        (
            "cluster_id = \"demo\"",
            "cluster_id = \"\"",
            "cluster.cluster_id",
            "invalid cluster id",
        ),
        ("id = 3,", "id = 2,", "cluster.peers.id", "appears twice"),
        ("7003", "7002", "cluster.peers.address", "appears twice"),
        (
            "127.0.0.1:7003",
            "localhost:7003",
            "cluster.peers.address",
            "invalid socket address",
        ),
        (
            "  { id = 3, address = \"127.0.0.1:7003\" },\n",
            "",
            "cluster.peers",
            "2 voter(s)",
        ),
    ];
    for (from, to, key, problem) in cases {
        let text = CLUSTER.replacen(from, to, 1);
        let msg = from_text(&text, &[]).unwrap_err().to_string();
        assert!(msg.starts_with("test.toml:"), "{msg}");
        assert!(msg.contains(&format!("key `{key}`")), "{text}\n=> {msg}");
        assert!(msg.contains(problem), "{text}\n=> {msg}");
    }
    let four = CLUSTER.replacen("},\n]", "},\n  { id = 4, address = \"127.0.0.1:7004\" },\n]", 1);
    assert!(from_text(&four, &[]).unwrap_err().to_string().contains("4 voter(s)"));
    let timing = format!("{CLUSTER}election_ticks = 3\nheartbeat_ticks = 3\n");
    let msg = from_text(&timing, &[]).unwrap_err().to_string();
    assert!(
        msg.contains("cluster.heartbeat_ticks") && msg.contains("less than"),
        "{msg}"
    );
    let unknown = format!("{CLUSTER}voters = 3\n");
    let msg = from_text(&unknown, &[]).unwrap_err().to_string();
    assert!(msg.contains("voters"), "{msg}");
}

#[test]
fn cluster_refuses_memory_only_sync() {
    let msg = from_text(&format!("sync = \"none\"\n{CLUSTER}"), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("key `sync`") && msg.contains("Raft log"), "{msg}");
    let msg = from_text(CLUSTER, &["--sync", "none"]).unwrap_err().to_string();
    assert!(msg.starts_with("flag --sync"), "{msg}");
    assert!(from_text(CLUSTER, &["--sync", "interval"]).is_ok());
}

#[test]
fn example_cluster_files_form_one_cluster() {
    let settings: Vec<Settings> = (1..=3)
        .map(|i| {
            let path = PathBuf::from(format!(
                "{}/../examples/cluster/node{i}.toml",
                env!("CARGO_MANIFEST_DIR")
            ));
            let text = std::fs::read_to_string(&path).unwrap();
            let file = parse_file(&path, &text).unwrap();
            resolve(
                &file,
                Some(&Source {
                    path: &path,
                    text: &text,
                }),
                &cli(&[]),
            )
            .unwrap()
        })
        .collect();
    let clusters: Vec<&ClusterSettings> = settings
        .iter()
        .map(|s| s.cluster.as_ref().expect("[cluster]"))
        .collect();
    for (i, c) in clusters.iter().enumerate() {
        assert_eq!(c.node_id, i as u64 + 1);
        assert_eq!((&c.peers, &c.cluster_id), (&clusters[0].peers, &clusters[0].cluster_id));
        assert_eq!(c.listen, c.peers[i].address);
        assert!(c.listen.ip().is_loopback() && settings[i].listeners[0].address.ip().is_loopback());
    }
    let client_ports: std::collections::BTreeSet<u16> =
        settings.iter().map(|s| s.listeners[0].address.port()).collect();
    let dirs: std::collections::BTreeSet<&PathBuf> = settings.iter().map(|s| &s.data_dir).collect();
    assert_eq!(
        (client_ports.len(), dirs.len()),
        (3, 3),
        "each node its own listener and data directory"
    );
}

/// A node joining a running cluster lists the members as they are now and itself, in any number.
#[test]
fn a_joining_node_may_list_any_number_of_members() {
    let four = CLUSTER
        .replacen("},\n]", "},\n  { id = 4, address = \"127.0.0.1:7004\" },\n]", 1)
        .replacen("node_id = 2", "node_id = 4\njoin = true", 1);
    let settings = from_text(&four, &[]).unwrap().cluster.expect("[cluster]");
    assert!(settings.join);
    assert_eq!(settings.voter_ids(), vec![1, 2, 3, 4]);
    let msg = from_text(&four.replacen("join = true", "join = false", 1), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("4 voter(s)") && msg.contains("join = true"), "{msg}");
    let alone = "[cluster]\nnode_id = 4\ncluster_id = \"demo\"\njoin = true\npeers = [{ id = 4, address = \"127.0.0.1:7004\" }]\n";
    assert!(from_text(alone, &[]).unwrap_err().to_string().contains("1 voter(s)"));
}

#[test]
fn the_partial_input_budget_defaults_to_64_mib_and_refuses_zero_naming_the_key() {
    let s = from_text("", &[]).unwrap();
    assert_eq!(s.limits.max_partial_input_bytes, 64 * 1024 * 1024);
    let s = from_text("[limits]\nmax_partial_input_bytes = 1048576\n", &[]).unwrap();
    assert_eq!(s.limits.max_partial_input_bytes, 1 << 20);
    let err = from_text("[limits]\nmax_partial_input_bytes = 0\n", &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.toml:2:27: key `limits.max_partial_input_bytes`: must be greater than 0"
    );
    let err = resolve(&FileConfig::default(), None, &cli(&["--max-partial-input-bytes", "0"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "flag --max-partial-input-bytes: key `limits.max_partial_input_bytes`: must be greater than 0"
    );
}
