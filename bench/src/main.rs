//! mqtt-bench: bounded load against any MQTT broker on this machine. Progress on stderr, one summary line (or JSON
//! with `--json`) on stdout.

mod conn;
mod paced;
mod retained;
mod wire;
mod workload;

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    FanIn,
    FanOut,
    Pairs,
    Conn,
    /// Stores `--messages` retained messages on distinct topics (`site/S/device/D/temp`), QoS 1.
    RetainedLoad,
    /// Subscribes to `#` and counts retained messages until `--messages` arrived or none came for 10 s.
    RetainedCount,
}

#[derive(Parser)]
#[command(about = "Load generator for MQTT brokers: throughput, latency, connections, memory")]
struct Args {
    /// Broker address (loopback).
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: SocketAddr,
    /// Other nodes of the same cluster, comma-separated: clients are spread over them and `--broker` in round
    /// robin, each subscriber on another node than its publisher.
    #[arg(long, value_delimiter = ',')]
    spread: Vec<SocketAddr>,
    #[arg(long, value_enum, default_value = "fan-in")]
    workload: Kind,
    /// Publishers (fan-in, pairs), subscribers (fan-out) or connections (conn).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value_t = 0)]
    qos: u8,
    /// Payload bytes, 16 (the stamp: send time, publisher, sequence) to 16 MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(workload::HEADER as i64..=16 << 20))]
    payload: u32,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Messages per second per publisher (default: unlimited).
    #[arg(long)]
    rate: Option<u64>,
    /// QoS 1/2 messages each publisher keeps in flight.
    #[arg(long, default_value_t = 64)]
    inflight: u64,
    /// The broker's pid, to report its resident memory.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// MQTT protocol level of every client: 4 (3.1.1) or 5 (5.0).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=5))]
    protocol: u8,
    /// Subscribers use persistent sessions (Clean Session 0), which a durable broker writes to disk
    #[arg(long)]
    persistent: bool,
    /// Retained messages for `retained-load` and `retained-count`.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rss = || args.broker_pid.and_then(conn::rss_kb);
    let shape = match args.workload {
        Kind::FanIn => workload::Shape::FanIn,
        Kind::FanOut => workload::Shape::FanOut,
        Kind::Pairs => workload::Shape::Pairs,
        Kind::RetainedLoad | Kind::RetainedCount => return retained_mode(&args),
        Kind::Conn => {
            conn::report_fd_limit();
            return match conn::run(
                args.broker,
                args.clients,
                args.broker_pid,
                Duration::from_secs(2),
                args.protocol == 5,
            ) {
                Ok(r) => {
                    let per_conn = r.bytes_per_connection().map_or("null".into(), |b| format!("{b:.0}"));
                    if args.json {
                        println!(
                            "{{\"workload\":\"conn\",\"connections\":{},\"connect_per_sec\":{:.0},\"bytes_per_connection\":{per_conn},\"rss_kb\":{},\"alive_after_hold\":{}}}",
                            r.connections,
                            r.per_second(),
                            r.rss_after_kb.unwrap_or(0),
                            r.alive
                        );
                    } else {
                        println!(
                            "conn: {} connections in {:.2}s ({:.0}/s), broker memory per connection {per_conn} bytes, {} answered a ping after the hold",
                            r.connections,
                            r.seconds,
                            r.per_second(),
                            r.alive
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mqtt-bench: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let w = workload::Workload {
        broker: args.broker,
        spread: args.spread.clone(),
        shape,
        clients: args.clients,
        qos: args.qos.min(2),
        payload: args.payload as usize,
        duration: Duration::from_secs(args.duration),
        rate: args.rate,
        inflight: args.inflight.max(1),
        persistent: args.persistent,
        v5: args.protocol == 5,
        broker_pid: args.broker_pid,
    };
    eprintln!(
        "mqtt-bench: {:?} x{} qos{} {}B for {}s against {}",
        shape, w.clients, w.qos, w.payload, args.duration, w.broker
    );
    let cpu_before = args.broker_pid.and_then(conn::cpu_seconds);
    match workload::run(&w) {
        Ok(r) => {
            let rss_kb = rss().unwrap_or(0);
            // Broker CPU per million deliveries: on 2 shared cores throughput is partly the load generator's, CPU
            // per delivery is the broker's own cost. From the moment publishing began (connecting left out); includes
            // draining.
            let cpu_before = r.broker_cpu_at_start.or(cpu_before);
            let cpu_per_m = match (cpu_before, args.broker_pid.and_then(conn::cpu_seconds)) {
                (Some(before), Some(after)) if r.received > 0 => {
                    format!("{:.3}", (after - before) * 1e6 / r.received as f64)
                }
                _ => "null".into(),
            };
            if args.json {
                println!(
                    "{{\"workload\":\"{shape:?}\",\"clients\":{},\"qos\":{},\"payload\":{},\"sent\":{},\"received\":{},\"lost\":{},\"duplicates\":{},\"msgs_per_sec\":{:.0},\"mb_per_sec\":{:.2},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"rss_kb\":{rss_kb},\"cpu_s_per_million\":{cpu_per_m}}}",
                    w.clients,
                    w.qos,
                    w.payload,
                    r.sent,
                    r.received,
                    r.lost(),
                    r.duplicates,
                    r.msgs_per_sec(),
                    r.msgs_per_sec() * w.payload as f64 / 1e6,
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    r.max_us
                );
            } else {
                println!(
                    "{shape:?} qos{}: {:.0} msg/s received ({:.2} MB/s), latency p50 {}us p99 {}us p99.9 {}us max {}us, sent {} received {} lost {} dup {}, broker CPU s per million {cpu_per_m}",
                    w.qos,
                    r.msgs_per_sec(),
                    r.msgs_per_sec() * w.payload as f64 / 1e6,
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    r.max_us,
                    r.sent,
                    r.received,
                    r.lost(),
                    r.duplicates
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mqtt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `retained-load` and `retained-count`: one JSON object or line with the count, the time and the broker's memory.
fn retained_mode(args: &Args) -> ExitCode {
    let v5 = args.protocol == 5;
    let loading = matches!(args.workload, Kind::RetainedLoad);
    let outcome = if loading {
        retained::load(
            args.broker,
            args.messages,
            args.payload as usize,
            args.inflight.max(1),
            v5,
        )
        .map(|s| (args.messages, s))
    } else {
        retained::count(args.broker, args.messages, Duration::from_secs(10), v5)
    };
    let (count, seconds) = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mqtt-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rss_kb = args.broker_pid.and_then(conn::rss_kb).unwrap_or(0);
    let what = if loading { "stored" } else { "received" };
    if args.json {
        println!("{{\"workload\":\"retained\",\"{what}\":{count},\"seconds\":{seconds:.2},\"rss_kb\":{rss_kb}}}");
    } else {
        println!("retained: {count} messages {what} in {seconds:.2}s, broker resident {rss_kb} kB");
    }
    if count == args.messages {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
