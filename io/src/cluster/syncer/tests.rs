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

/// Requests made while a sync runs are taken by the thread as soon as it returns, without the loop reading a
/// completion first (the newest replaces older ones not started); a completion of an older write leaves the newest
/// awaited, and the completions read at once report the newest write synced.
#[test]
fn requests_made_during_a_sync_are_taken_without_the_loop_asking_again() {
    let poll = Poll::new().expect("poll");
    let token = Token(7);
    let mut syncer = Syncer::start(poll.registry(), token).expect("start");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = File::create(dir.path().join("log")).expect("create");
    for seq in 1..=5 {
        file.write_all(b"frame").expect("write");
        assert!(syncer.request(seq, file.try_clone().expect("clone")));
        assert_eq!(syncer.in_flight(), Some(seq), "the newest request is the one awaited");
    }
    let started = std::time::Instant::now();
    let mut newest = None;
    while newest != Some(5) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "write 5 not synced within 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
        if let Some((seq, result)) = syncer.completed() {
            assert!(result.is_ok(), "{result:?}");
            assert!(
                newest.is_none_or(|n| seq > n),
                "completions go forward: {seq} after {newest:?}"
            );
            newest = Some(seq);
            if seq < 5 {
                assert_eq!(syncer.in_flight(), Some(5), "write 5 still awaited after {seq} synced");
            }
        }
    }
    assert_eq!(syncer.in_flight(), None);
    assert!(syncer.completed().is_none(), "nothing after the newest");
}
