use super::*;
use mqtt_core::broker::ListenerId;
use std::net::SocketAddr;
use std::time::Instant;

fn info<'a>(listener: usize, username: Option<&'a str>, password: Option<&'a [u8]>) -> ConnectInfo<'a> {
    ConnectInfo {
        conn: mqtt_core::broker::ConnectionId(1),
        client_id: "c",
        peer: SocketAddr::from(([192, 0, 2, 1], 5000)),
        listener: ListenerId(listener),
        username,
        password,
        auth_method: None,
        auth_data: None,
    }
}

/// Listener 0 is loopback-like (anonymous allowed), listener 1 is not.
fn authenticator(passwords: Option<&str>, acl: Option<&str>) -> FileAuthenticator {
    FileAuthenticator {
        passwords: passwords.map(|t| PasswordFile::parse("pw".as_ref(), t).expect("password file")),
        acl: acl.map(|t| AclFile::parse("acl".as_ref(), t).expect("acl file")),
        allow_anonymous: vec![true, false, false],
        // Listener 2 takes user names from client certificates.
        trusted_username: vec![false, false, true],
        cache: Arc::new(Mutex::new(VerifiedCache::new([1; 32]))),
        verifier: None,
    }
}

#[test]
fn anonymous_access_follows_the_listener() {
    let mut auth = authenticator(None, None);
    assert_eq!(
        auth.authenticate(&info(0, None, None)),
        AuthDecision::Allow { data: None }
    );
    assert_eq!(
        auth.authenticate(&info(1, None, None)),
        AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED)
    );
    // An unknown listener index is treated as not allowing anonymous clients.
    assert_eq!(
        auth.authenticate(&info(9, None, None)),
        AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED)
    );
}

#[test]
fn passwords_are_checked_against_the_file() {
    let phc = passwd::hash(b"s3cret").expect("hash");
    let mut auth = authenticator(Some(&format!("alice:{phc}\n")), None);
    let allow = AuthDecision::Allow { data: None };
    let bad = AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert_eq!(auth.authenticate(&info(1, Some("alice"), Some(b"s3cret"))), allow);
    assert_eq!(auth.authenticate(&info(1, Some("alice"), Some(b"wrong"))), bad);
    assert_eq!(auth.authenticate(&info(1, Some("alice"), None)), bad);
    // Unknown users are refused even where anonymous access is allowed.
    assert_eq!(auth.authenticate(&info(0, Some("mallory"), Some(b"s3cret"))), bad);
    // Enhanced authentication is not offered.
    let mut enhanced = info(0, None, None);
    enhanced.auth_method = Some("SCRAM-SHA-1");
    assert_eq!(
        auth.authenticate(&enhanced),
        AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD)
    );
}

fn cached(auth: &FileAuthenticator, user: &str, phc: &str, password: &[u8]) -> bool {
    auth.cache.lock().expect("cache lock").contains(user, phc, password)
}

#[test]
fn successful_verification_is_cached_per_hash() {
    let phc = passwd::hash(b"s3cret").expect("hash");
    let mut auth = authenticator(Some(&format!("alice:{phc}\n")), None);
    let conn = ConnectionId(1);
    assert!(!cached(&auth, "alice", &phc, b"s3cret"));
    assert!(matches!(
        auth.check_password(conn, "alice", Some(b"s3cret")),
        Check::Done(true)
    ));
    assert!(cached(&auth, "alice", &phc, b"s3cret"));
    // A failure is not cached, and does not evict the success.
    assert!(matches!(
        auth.check_password(conn, "alice", Some(b"nope")),
        Check::Done(false)
    ));
    assert!(!cached(&auth, "alice", &phc, b"nope"));
    assert!(matches!(
        auth.check_password(conn, "alice", Some(b"s3cret")),
        Check::Done(true)
    ));
}

/// Waits for the verifier's next verdict.
fn next_verdict(verifier: &Verifier) -> Verdict {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(verdict) = verifier.try_verdict() {
            return verdict;
        }
        assert!(Instant::now() < deadline, "no verdict within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn uncached_password_is_verified_by_the_pool_and_then_answered_at_once() {
    let phc = passwd::hash(b"s3cret").expect("hash");
    let verifier = Verifier::start(1, std::time::Duration::from_secs(10)).expect("verifier threads");
    let mut auth = authenticator(Some(&format!("alice:{phc}\n")), None).with_verifier(verifier.queue());
    let mut login = info(1, Some("alice"), Some(b"s3cret"));
    login.conn = ConnectionId(7);
    assert_eq!(auth.authenticate(&login), AuthDecision::Pending);
    let verdict = next_verdict(&verifier);
    assert_eq!(verdict.conn, ConnectionId(7));
    assert_eq!(verdict.decision, AuthDecision::Allow { data: None });
    // The pool remembered it: the next login is decided at once.
    assert_eq!(auth.authenticate(&login), AuthDecision::Allow { data: None });
    // A wrong password is verified by the pool too, and refused with 0x86.
    let mut wrong = info(1, Some("alice"), Some(b"guess"));
    wrong.conn = ConnectionId(8);
    assert_eq!(auth.authenticate(&wrong), AuthDecision::Pending);
    let verdict = next_verdict(&verifier);
    assert_eq!(verdict.conn, ConnectionId(8));
    assert_eq!(
        verdict.decision,
        AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    );
    // An unknown user's password is verified too (against a stand-in hash), so that its refusal takes as long as
    // a wrong password's and the timing does not tell which user names exist; it is refused with the same 0x86.
    let mut unknown = info(1, Some("mallory"), Some(b"x"));
    unknown.conn = ConnectionId(9);
    assert_eq!(auth.authenticate(&unknown), AuthDecision::Pending);
    let verdict = next_verdict(&verifier);
    assert_eq!(verdict.conn, ConnectionId(9));
    assert_eq!(
        verdict.decision,
        AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    );
    // Even with a password that verifies against the stand-in (alice's), an unknown user is refused, and the
    // cache never learns it.
    let mut impostor = info(1, Some("mallory"), Some(b"s3cret"));
    impostor.conn = ConnectionId(10);
    assert_eq!(auth.authenticate(&impostor), AuthDecision::Pending);
    assert_eq!(
        next_verdict(&verifier).decision,
        AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    );
    assert_eq!(auth.authenticate(&impostor), AuthDecision::Pending);
    let _ = next_verdict(&verifier);
    // What needs no hash is decided at once: no password at all, anonymous access.
    assert_eq!(
        auth.authenticate(&info(1, Some("mallory"), None)),
        AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    );
    assert_eq!(
        auth.authenticate(&info(0, None, None)),
        AuthDecision::Allow { data: None }
    );
}

/// User names must not be probed by timing: an unknown user is refused after an Argon2 verification against a
/// stand-in hash with the file's parameters, as a wrong password is. Checked by counting the verifications each
/// refusal ran and their cost (exact, whatever the load), then by wall time with a margin only a skipped
/// verification reaches (it is ~1000x faster), medians of interleaved runs against scheduling noise.
#[test]
fn refusing_an_unknown_user_takes_as_long_as_refusing_a_wrong_password() {
    let phc = passwd::hash(b"s3cret").expect("hash");
    let mut auth = authenticator(Some(&format!("alice:{phc}\n")), None);
    let conn = ConnectionId(1);
    // The verifications one refusal ran (the authenticator has no verifier pool: they run on this thread).
    let refuse = |auth: &mut FileAuthenticator, user: &str| {
        passwd::VERIFIED.with(|v| v.borrow_mut().clear());
        let started = Instant::now();
        assert!(matches!(
            auth.check_password(conn, user, Some(b"guess")),
            Check::Done(false)
        ));
        (passwd::VERIFIED.with(|v| v.take()), started.elapsed())
    };
    let (wrong_work, _) = refuse(&mut auth, "alice");
    let (unknown_work, _) = refuse(&mut auth, "mallory");
    assert_eq!(
        wrong_work.len(),
        1,
        "a wrong password costs one verification: {wrong_work:?}"
    );
    assert_eq!(
        unknown_work, wrong_work,
        "an unknown user costs the same verification as a wrong password"
    );

    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        wrong.push(refuse(&mut auth, "alice").1);
        unknown.push(refuse(&mut auth, "mallory").1);
    }
    wrong.sort();
    unknown.sort();
    let (wrong, unknown) = (wrong[2], unknown[2]);
    assert!(
        unknown * 10 > wrong,
        "unknown user refused in {unknown:?}, wrong password in {wrong:?} (medians of 5)"
    );
}

#[test]
fn acl_decides_topics_and_no_acl_allows_all() {
    let open = authenticator(None, None);
    let who = ClientIdentity {
        client_id: "c",
        username: Some("alice"),
    };
    assert!(open.authorize_publish(who, "any/thing") && open.authorize_read(who, "x"));
    assert!(open.authorize_subscribe(who, "#"));
    let ruled = authenticator(None, Some("user alice\ntopic read in/#\ntopic write out/#\n"));
    assert!(ruled.authorize_read(who, "in/1") && !ruled.authorize_publish(who, "in/1"));
    assert!(ruled.authorize_publish(who, "out/1") && !ruled.authorize_read(who, "out/1"));
    assert!(ruled.authorize_subscribe(who, "in/+") && !ruled.authorize_subscribe(who, "out/#"));
    // Without an ACL the broker need not ask per delivery; with one it must (it refuses "out/1" above).
    assert!(!open.restricts_reads() && ruled.restricts_reads());
}

#[test]
fn loading_reports_the_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic read a\nnonsense here\n").expect("write");
    let source = AuthSource {
        password_file: None,
        acl_file: Some(acl.clone()),
        allow_anonymous: vec![true],
        trusted_username: vec![false],
    };
    let error = source.load().err().expect("malformed ACL").to_string();
    assert_eq!(
        error,
        format!(
            "{}:2: unknown keyword \"nonsense\" (expected user, topic or pattern)",
            acl.display()
        )
    );
    let missing = AuthSource {
        password_file: Some(dir.path().join("nope")),
        acl_file: None,
        allow_anonymous: vec![],
        trusted_username: vec![],
    };
    assert!(matches!(
        missing.load(),
        Err(AuthFileError::Passwords(PasswdError::Read { .. }))
    ));
}

#[test]
fn a_certificate_user_name_needs_no_password_but_the_acl_still_applies() {
    let mut auth = authenticator(Some(""), Some("user alice\ntopic readwrite home/alice/#\n"));
    // Listener 2 vouches for the user name (a verified client certificate): no password file entry needed.
    assert_eq!(
        auth.authenticate(&info(2, Some("alice"), None)),
        AuthDecision::Allow { data: None }
    );
    // The same user name on an ordinary listener must still prove itself.
    assert_eq!(
        auth.authenticate(&info(1, Some("alice"), None)),
        AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    );
    // No user name on the certificate listener: anonymous rules, which are off there.
    assert_eq!(
        auth.authenticate(&info(2, None, None)),
        AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED)
    );
    let alice = ClientIdentity {
        client_id: "c",
        username: Some("alice"),
    };
    assert!(auth.authorize_publish(alice, "home/alice/lamp"));
    assert!(!auth.authorize_publish(alice, "home/bob/lamp"));
}
