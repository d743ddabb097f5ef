//! The optional HTTP listener (`[http] listen`): `/metrics` and `/health`, served by one plain thread with
//! blocking sockets, one request per connection. No async runtime.
//!
//! Every request first asks the event loop for fresh values (`Shared::ask`, which rings the loop's waker) and waits
//! for its answer up to `LOOP_ANSWER_TIMEOUT`. So a scrape sees the core's counters as of that moment, the loop
//! pays for metrics only when scraped, and `/health` also proves the loop is turning: a loop that does not answer
//! is unhealthy.

use crate::metrics::Metrics;
use prometheus_client::registry::Registry;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// How long a request waits for the event loop; past it `/health` says 503 and `/metrics` serves older values.
const LOOP_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// A client gets this long to send its request head and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Request heads are small; anything longer is refused (bounded buffer).
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// What the event loop reports about its health when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    /// Listening, not shutting down, and not out of file descriptors.
    pub accepting: bool,
    /// The data directory takes writes (or none is used).
    pub storage_writable: bool,
    /// A cluster node's view of its cluster; `None` for a single broker.
    pub cluster: Option<ClusterHealth>,
}

/// What `/health` says about a cluster node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterHealth {
    pub node_id: u64,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: &'static str,
    pub term: u64,
    /// The leader this node knows of, if any: without one it can serve no client.
    pub leader: Option<u64>,
    pub applied: u64,
}

#[derive(Debug, Default)]
struct Answer {
    /// The last request number the loop answered.
    answered: u64,
    health: Health,
}

/// Shared between the HTTP thread (asks) and the event loop (answers).
pub struct Shared {
    asked: AtomicU64,
    answer: Mutex<Answer>,
    answered: Condvar,
    waker: Arc<mio::Waker>,
}

impl Shared {
    pub fn new(waker: Arc<mio::Waker>) -> Shared {
        Shared {
            asked: AtomicU64::new(0),
            answer: Mutex::new(Answer::default()),
            answered: Condvar::new(),
            waker,
        }
    }

    /// For the loop: whether a request waits for an answer.
    pub fn is_asked(&self) -> bool {
        let answered = self.answer.lock().map_or(u64::MAX, |a| a.answered);
        self.asked.load(Ordering::Acquire) > answered
    }

    /// For the loop, after refreshing the metrics: answer every request asked so far.
    pub fn answer(&self, health: Health) {
        let asked = self.asked.load(Ordering::Acquire);
        if let Ok(mut answer) = self.answer.lock() {
            answer.answered = asked;
            answer.health = health;
        }
        self.answered.notify_all();
    }

    /// For the HTTP thread: ask the loop, and wait for its answer. `None`: it did not answer in time.
    fn ask(&self) -> Option<Health> {
        let ticket = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        if self.waker.wake().is_err() {
            return None;
        }
        let guard = self.answer.lock().ok()?;
        let (guard, _) = self
            .answered
            .wait_timeout_while(guard, LOOP_ANSWER_TIMEOUT, |a| a.answered < ticket)
            .ok()?;
        (guard.answered >= ticket).then_some(guard.health)
    }
}

/// Bind `address` and serve on a thread of its own; returns the bound address (port 0 resolved).
pub fn start(address: SocketAddr, registry: Arc<Registry>, shared: Arc<Shared>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let local = listener.local_addr()?;
    thread::Builder::new().name("http".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(e) = serve(stream, &registry, &shared) {
                        log::debug!("http: {e}");
                    }
                }
                // Out of descriptors, say: the next accept may work.
                Err(e) => {
                    log::debug!("http: accept failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })?;
    Ok(local)
}

fn serve(mut stream: TcpStream, registry: &Registry, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let Some((method, path)) = read_head(&mut stream)? else {
        return respond(&mut stream, 400, "text/plain", "bad request\n");
    };
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", "only GET\n");
    }
    // Query strings do not select anything here.
    let path = path.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => {
            // Stale values are better than none when the loop is slow; /health is where slowness shows.
            let _ = shared.ask();
            let body = Metrics::encode(registry);
            respond(
                &mut stream,
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
            )
        }
        "/health" => {
            let (status, body) = health_response(shared.ask());
            respond(&mut stream, status, "text/plain", &body)
        }
        _ => respond(&mut stream, 404, "text/plain", "not found: try /metrics or /health\n"),
    }
}

/// 200 when the loop answered, accepts clients and can write its data; 503 with the reasons otherwise.
pub fn health_response(health: Option<Health>) -> (u16, String) {
    let Some(health) = health else {
        return (
            503,
            format!("unhealthy: the event loop did not answer within {LOOP_ANSWER_TIMEOUT:?}\n"),
        );
    };
    let mut problems = Vec::new();
    if !health.accepting {
        problems.push("not accepting clients (shutting down or out of file descriptors)");
    }
    if !health.storage_writable {
        problems.push("the data directory refuses writes (QoS 1/2 messages are refused)");
    }
    // A node that knows no leader can neither serve clients itself nor relay them.
    if health.cluster.is_some_and(|c| c.leader.is_none()) {
        problems.push("this cluster node knows no leader (election in progress or no quorum)");
    }
    let cluster = health.cluster.map_or(String::new(), |c| {
        let leader = c.leader.map_or("none".to_string(), |l| format!("node {l}"));
        format!(
            "cluster node {}: role {}, term {}, leader {leader}, applied index {}\n",
            c.node_id, c.role, c.term, c.applied
        )
    });
    if problems.is_empty() {
        (200, format!("ok\n{cluster}"))
    } else {
        (503, format!("unhealthy: {}\n{cluster}", problems.join("; ")))
    }
}

/// Reads the request head; the method and path, or `None` for something that is not an HTTP request.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<(String, String)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or_default().to_string();
                let path = request.path.unwrap_or_default().to_string();
                return Ok(Some((method, path)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => {}
            _ => return Ok(None),
        }
    }
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_200_only_when_the_loop_answers_accepts_and_can_write() {
        let healthy = Health {
            accepting: true,
            storage_writable: true,
            cluster: None,
        };
        assert_eq!(health_response(Some(healthy)).0, 200);
        assert_eq!(health_response(None).0, 503);
        let full = Health {
            storage_writable: false,
            ..healthy
        };
        let (status, body) = health_response(Some(full));
        assert_eq!(status, 503);
        assert!(body.contains("refuses writes"), "{body}");
        let closing = Health {
            accepting: false,
            ..healthy
        };
        assert_eq!(health_response(Some(closing)).0, 503);
    }

    #[test]
    fn a_cluster_node_is_healthy_only_while_it_knows_a_leader_and_says_which() {
        let node = ClusterHealth {
            node_id: 2,
            role: "follower",
            term: 3,
            leader: Some(1),
            applied: 17,
        };
        let health = Health {
            accepting: true,
            storage_writable: true,
            cluster: Some(node),
        };
        let (status, body) = health_response(Some(health));
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("cluster node 2: role follower, term 3, leader node 1, applied index 17"),
            "{body}"
        );
        let lost = Health {
            cluster: Some(ClusterHealth {
                role: "candidate",
                leader: None,
                ..node
            }),
            ..health
        };
        let (status, body) = health_response(Some(lost));
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("knows no leader") && body.contains("leader none"),
            "{body}"
        );
    }
}
