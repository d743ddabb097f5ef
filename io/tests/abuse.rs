//! Abuse: what a hostile client can make the real broker hold. Each test is bounded in count and time, talks only
//! to loopback, and asserts the broker's resident memory stays within a budget while a well-behaved client keeps
//! its service. Figures (before, peak, after) are printed for the notes.

mod common;

use common::{pump5, wait_for, BrokerProcess};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
use rumqttc::v5::mqttbytes::QoS;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
const MIB: u64 = 1024 * 1024;

/// A subscriber and a publisher on one topic: the well-behaved client whose service must continue.
struct Witness {
    client: v5::Client,
    events: common::Events5,
}

impl Witness {
    fn connect(broker: &BrokerProcess) -> Witness {
        let mut opts = v5::MqttOptions::new("witness", "127.0.0.1", broker.port());
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, connection) = v5::Client::new(opts, 64);
        let events = pump5(connection);
        wait_for(&events, WAIT, |e| {
            matches!(e, Ok(v5::Event::Incoming(Packet5::ConnAck(_)))).then_some(())
        })
        .expect("witness CONNACK");
        client.subscribe("witness/echo", QoS::AtLeastOnce).unwrap();
        wait_for(&events, WAIT, |e| {
            matches!(e, Ok(v5::Event::Incoming(Packet5::SubAck(_)))).then_some(())
        })
        .expect("witness SUBACK");
        Witness { client, events }
    }

    /// A QoS 1 round trip through the broker, within `WAIT`.
    fn round_trip(&self, n: u32) {
        let payload = format!("echo {n}");
        self.client
            .publish("witness/echo", QoS::AtLeastOnce, false, payload.clone())
            .unwrap();
        let got = wait_for(&self.events, WAIT, |e| match e {
            Ok(v5::Event::Incoming(Packet5::Publish(p))) if p.payload == payload.as_bytes() => Some(()),
            _ => None,
        });
        assert!(
            got.is_some(),
            "the well-behaved client lost its service (round trip {n})"
        );
    }
}

/// The start of a v5 CONNECT announcing `remaining` bytes of body (variable-length encoded).
fn connect_header(remaining: usize) -> Vec<u8> {
    let mut out = vec![0x10];
    let mut len = remaining;
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 5]);
    out
}

fn report(name: &str, before: u64, peak: u64, after: u64) {
    eprintln!(
        "abuse {name}: broker RSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
}

/// 20 connections each announce a 200 MB CONNECT and stream zeros: before this limit existed they took the broker
/// from 4 MB to over 1 GB. Each is now refused on its fixed header (max_connect_size, 64 KiB by default): a v5
/// client gets CONNACK 0x95 Packet too large, then the connection ends while what it still sends is discarded.
#[test]
fn huge_announced_connects_are_refused_on_their_header_and_memory_stays_flat() {
    let broker = BrokerProcess::start(&[]);
    let witness = Witness::connect(&broker);
    let before = broker.rss_bytes();
    let mut peak = before;
    let zeros = vec![0u8; 256 * 1024];
    let mut streams: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", broker.port())).expect("connect");
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s.write_all(&connect_header(200_000_000)).expect("header");
            s
        })
        .collect();
    // 2 MiB of zeros per connection (40 MiB in all), as far as the broker lets us write.
    for _round in 0..8 {
        for s in &mut streams {
            let _ = s.write_all(&zeros);
        }
        peak = peak.max(broker.rss_bytes());
    }
    for s in &mut streams {
        let mut answer = Vec::new();
        // The broker answers and closes: read to end of stream (or reset, once it stops draining).
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.len() >= 4 && answer[0] == 0x20 && answer[3] == 0x95,
            "expected CONNACK 0x95 Packet too large [MQTT-3.2.2-8], got {answer:?}"
        );
    }
    witness.round_trip(1);
    let after = broker.rss_bytes();
    report("200 MB CONNECTs x20", before, peak, after);
    assert!(
        peak < before + 32 * MIB,
        "peak RSS {peak} grew more than 32 MiB over {before}"
    );
}

/// Hundreds of half-sent CONNECTs within max_connect_size: together they may hold at most max_preconnect_bytes;
/// the connections beyond it are closed, the witness keeps its service.
#[test]
fn half_sent_connects_share_one_budget() {
    let broker = BrokerProcess::start(&["--max-preconnect-bytes", "4194304"]);
    let witness = Witness::connect(&broker);
    let before = broker.rss_bytes();
    let chunk = vec![0u8; 60 * 1024];
    let mut streams = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(("127.0.0.1", broker.port())).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        // Announces 63 KiB, sends 60 KiB of it: a CONNECT that never completes.
        let _ = s
            .write_all(&connect_header(63 * 1024))
            .and_then(|_| s.write_all(&chunk));
        streams.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = broker.rss_bytes();
    witness.round_trip(1);
    // 300 x 60 KiB is 18 MiB; the budget allows 4 MiB of it.
    assert!(
        broker.wait_for_log("exceed max_preconnect_bytes", WAIT),
        "connections beyond the budget are closed and logged"
    );
    drop(streams);
    std::thread::sleep(Duration::from_millis(300));
    let after = broker.rss_bytes();
    report("300 half-sent CONNECTs", before, peak, after);
    assert!(
        peak < before + 16 * MIB,
        "peak RSS {peak} grew more than 16 MiB over {before}"
    );
    witness.round_trip(2);
}

/// A client that floods PINGREQs and never reads: the kernel's buffers fill, then the broker's output for it, and
/// past max_outbuf_bytes plus the reply slack it is disconnected instead of growing.
#[test]
fn a_ping_flood_without_reading_is_disconnected() {
    let broker = BrokerProcess::start(&["--max-outbuf-bytes", "262144"]);
    let witness = Witness::connect(&broker);
    let before = broker.rss_bytes();
    let mut s = TcpStream::connect(("127.0.0.1", broker.port())).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // A minimal v3.1.1 CONNECT, keep alive 60 s.
    s.write_all(&[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'p'])
        .unwrap();
    let pings = [0xC0u8, 0x00].repeat(32 * 1024);
    let mut peak = before;
    let mut closed = false;
    // Bounded in time: the broker must close within seconds (after closing it discards what still arrives for up
    // to its close linger, then resets the connection, which is when our writes fail).
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if s.write_all(&pings).is_err() {
            closed = true;
            break;
        }
        peak = peak.max(broker.rss_bytes());
    }
    witness.round_trip(1);
    let after = broker.rss_bytes();
    report("ping flood without reading", before, peak, after);
    assert!(closed, "the flooder is disconnected");
    assert!(broker.wait_for_log("replies beyond max_outbuf_bytes unread", WAIT));
    assert!(
        peak < before + 32 * MIB,
        "peak RSS {peak} grew more than 32 MiB over {before}"
    );
}

/// Slow loris: a CONNECT sent a byte at a time never extends the connect timeout, and a thousand connections that
/// send nothing hold little and are closed by it.
#[test]
fn slow_and_silent_connections_end_at_the_connect_timeout() {
    let broker = BrokerProcess::start(&["--connect-timeout-ms", "1500"]);
    let witness = Witness::connect(&broker);
    let before = broker.rss_bytes();
    let silent: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", broker.port())).expect("connect"))
        .collect();
    let mut loris = TcpStream::connect(("127.0.0.1", broker.port())).expect("connect");
    let connect = connect_header(200);
    let started = Instant::now();
    let mut loris_closed_after = None;
    for byte in connect.iter().cycle().take(40) {
        if loris.write_all(&[*byte]).is_err() {
            loris_closed_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let peak = broker.rss_bytes();
    witness.round_trip(1);
    // Every silent connection sees end of stream once the timeout closed it.
    for mut s in silent {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "a silent connection is closed by the connect timeout"
        );
    }
    let after = broker.rss_bytes();
    report("1000 silent + slow loris", before, peak, after);
    let closed_after = loris_closed_after.expect("the byte-at-a-time CONNECT is closed");
    assert!(
        closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}, not at the 1.5 s connect timeout"
    );
    assert!(
        peak < before + 32 * MIB,
        "peak RSS {peak} grew more than 32 MiB over {before}"
    );
}
