//! The broker's optional HTTP listener (`/health`, `/metrics`), read with a plain HTTP/1.1 GET.

use super::BrokerProcess;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long to wait for the listener's start-up line, an answer, or an awaited state.
const HTTP_WAIT: Duration = Duration::from_secs(20);

/// The HTTP address from the start-up line "metrics on http://ADDR/metrics, ...".
pub fn http_addr(broker: &BrokerProcess) -> SocketAddr {
    assert!(
        broker.wait_for_log("metrics on http://", HTTP_WAIT),
        "{}",
        broker.log_text()
    );
    let log = broker.log_text();
    let rest = log.split("metrics on http://").nth(1).expect("logged");
    rest.split('/')
        .next()
        .expect("address")
        .parse()
        .expect("address parses")
}

/// GET `path`; the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the http listener");
    stream.set_read_timeout(Some(HTTP_WAIT)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// Polls `path` until its answer satisfies `done` (or the wait is over); the last answer.
pub fn poll(addr: SocketAddr, path: &str, done: impl Fn(&(u16, String)) -> bool) -> (u16, String) {
    let deadline = Instant::now() + HTTP_WAIT;
    loop {
        let got = get(addr, path);
        if done(&got) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
