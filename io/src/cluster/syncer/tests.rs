use super::*;
use mio::{Events, Poll};
use std::time::Duration;

/// A sync request completes on the thread and wakes the poller with the syncer's token; the completion names the
/// write it covered, and until then nothing is reported.
#[test]
fn a_sync_completes_on_the_thread_and_wakes_the_loop() {
    let mut poll = Poll::new().expect("poll");
    let token = Token(7);
    let mut syncer = Syncer::start(poll.registry(), token).expect("start");
    assert!(syncer.completed().is_none(), "a completion before any request");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = File::create(dir.path().join("log")).expect("create");
    file.write_all(b"frame").expect("write");
    assert!(syncer.request(3, file.try_clone().expect("clone")));
    assert_eq!(syncer.in_flight(), Some(3));
    let mut events = Events::with_capacity(4);
    let mut done = None;
    for _ in 0..500 {
        poll.poll(&mut events, Some(Duration::from_millis(10))).expect("poll");
        if events.iter().any(|e| e.token() == token) {
            done = syncer.completed();
            if done.is_some() {
                break;
            }
        }
    }
    let (seq, result) = done.expect("no wake-up with a completion within 5 s");
    assert_eq!(seq, 3);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(syncer.in_flight(), None);
    assert!(syncer.completed().is_none(), "one request, one completion");
}
