//! The password file: one `username:phc-hash` per line, `#` comments and blank lines ignored (the layout of
//! mosquitto_passwd files; the hashes are Argon2 PHC strings, `$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
//!
//! Hashing uses Argon2id with the crate's default (OWASP-recommended) parameters: 19 MiB, 2 passes, 1 lane, about
//! 20-40 ms per verification on a server core. The event loop is single-threaded, so every uncached verification
//! stalls it for that long; the authenticator therefore caches successful verifications (see `cache.rs`), and the
//! core slows down repeated failures per address. Each hash names its own parameters, so stronger or weaker ones
//! can be written into the file by other tools and are honoured.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What is wrong with one line of a password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// No `:` between user name and hash.
    MissingColon,
    EmptyUsername,
    /// The hash is not a PHC string.
    BadHash(String),
    /// A PHC string of an algorithm other than Argon2.
    UnsupportedAlgorithm(String),
    /// The same user twice: which line wins would be a guess.
    DuplicateUser(String),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::MissingColon => write!(f, "expected username:hash"),
            LineProblem::EmptyUsername => write!(f, "empty user name"),
            LineProblem::BadHash(e) => write!(f, "not a PHC password hash ({e})"),
            LineProblem::UnsupportedAlgorithm(a) => write!(f, "unsupported hash algorithm {a:?} (expected argon2id)"),
            LineProblem::DuplicateUser(u) => write!(f, "user {u:?} appears twice"),
        }
    }
}

/// Errors of reading, parsing, editing and writing password files.
#[derive(Debug)]
pub enum PasswdError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Malformed {
        path: PathBuf,
        line: usize,
        problem: LineProblem,
    },
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A user name that cannot be stored in the file.
    BadUsername(String),
    /// Hashing failed (never for valid input; reported rather than unwrapped).
    Hash(String),
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::Read { path, source } => write!(f, "cannot read password file {}: {source}", path.display()),
            PasswdError::Malformed { path, line, problem } => write!(f, "{}:{line}: {problem}", path.display()),
            PasswdError::Write { path, source } => {
                write!(f, "cannot write password file {}: {source}", path.display())
            }
            PasswdError::BadUsername(u) => {
                write!(
                    f,
                    "invalid user name {u:?}: must be non-empty, without ':' or line breaks, not start with '#'"
                )
            }
            PasswdError::Hash(e) => write!(f, "cannot hash password: {e}"),
        }
    }
}

impl std::error::Error for PasswdError {}

/// The users and their PHC hash strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: BTreeMap<String, String>,
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, PasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswdError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PasswordFile::parse(path, &text)
    }

    /// Parses a file's text; `path` is for error messages.
    pub fn parse(path: &Path, text: &str) -> Result<PasswordFile, PasswdError> {
        let mut users = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let malformed = |problem| PasswdError::Malformed {
                path: path.to_path_buf(),
                line: index + 1,
                problem,
            };
            let Some((user, hash)) = parse_line(raw).map_err(malformed)? else {
                continue;
            };
            if users.insert(user.to_string(), hash.to_string()).is_some() {
                return Err(malformed(LineProblem::DuplicateUser(user.to_string())));
            }
        }
        Ok(PasswordFile { users })
    }

    /// The PHC hash of `user`, if the file has the user.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// A hash to verify an unknown user's password against, so that refusing the user takes as long as refusing
    /// a wrong password would: the response time must not tell which user names exist. Any entry's hash has the
    /// file's own cost parameters.
    pub fn stand_in_hash(&self) -> Option<&str> {
        self.users.values().next().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// `None` for blank and comment lines; the user name and hash otherwise.
fn parse_line(raw: &str) -> Result<Option<(&str, &str)>, LineProblem> {
    let line = raw.trim_end_matches('\r');
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let (user, hash) = line.split_once(':').ok_or(LineProblem::MissingColon)?;
    if user.is_empty() {
        return Err(LineProblem::EmptyUsername);
    }
    let hash = hash.trim();
    let parsed = PasswordHash::new(hash).map_err(|e| LineProblem::BadHash(e.to_string()))?;
    let algorithm = parsed.algorithm.as_str();
    if !matches!(algorithm, "argon2id" | "argon2i" | "argon2d") {
        return Err(LineProblem::UnsupportedAlgorithm(algorithm.to_string()));
    }
    Ok(Some((user, hash)))
}

/// Checks `password` against a PHC hash, with the parameters the hash names. Deterministic: no clock, no
/// randomness.
pub fn verify(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => {
            #[cfg(test)]
            VERIFIED.with(|v| {
                let cost = format!("{}$v={:?}${}", hash.algorithm, hash.version, hash.params);
                v.borrow_mut().push(cost);
            });
            Argon2::default().verify_password(password, &hash).is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
thread_local! {
    /// The cost (algorithm, version, memory, passes, lanes) of each Argon2 verification this thread ran: tests count
    /// the work a refusal did instead of timing it, which a loaded machine cannot make fail.
    pub(super) static VERIFIED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A fresh Argon2id hash of `password` with a random salt, as a PHC string.
pub fn hash(password: &[u8]) -> Result<String, PasswdError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswdError::Hash(e.to_string()))
}

/// Whether `user` can be written as the first field of a line.
pub fn check_username(user: &str) -> Result<(), PasswdError> {
    let bad = user.is_empty() || user.contains([':', '\n', '\r']) || user.trim_start().starts_with('#');
    if bad {
        return Err(PasswdError::BadUsername(user.to_string()));
    }
    Ok(())
}

/// The file's text with `user`'s line set to `phc`: replaced in place (comments and order kept), or appended.
pub fn set_user(text: &str, user: &str, phc: &str) -> String {
    let mut out = String::with_capacity(text.len() + phc.len() + user.len() + 2);
    let mut done = false;
    for line in text.lines() {
        if line_user(line) == Some(user) {
            if !done {
                out.push_str(&format!("{user}:{phc}\n"));
                done = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !done {
        out.push_str(&format!("{user}:{phc}\n"));
    }
    out
}

/// The file's text without `user`'s line(s), and whether there was one.
pub fn remove_user(text: &str, user: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for line in text.lines() {
        if line_user(line) == Some(user) {
            found = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, found)
}

fn line_user(line: &str) -> Option<&str> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(user, _)| user)
}

/// Replaces the file with `text`, readable by the owner only (0600): written to a temporary file beside it and
/// renamed over it, so a crash never leaves half a file.
pub fn write_private(path: &Path, text: &str) -> Result<(), PasswdError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PasswdError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PasswordFile, PasswdError> {
        PasswordFile::parse(Path::new("users.pw"), text)
    }

    fn problem_at(text: &str) -> (usize, LineProblem) {
        match parse(text) {
            Err(PasswdError::Malformed { line, problem, .. }) => (line, problem),
            other => panic!("expected a malformed-line error, got {other:?}"),
        }
    }

    #[test]
    fn hash_then_verify_round_trips_and_rejects_other_passwords() {
        let phc = hash(b"correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&phc, b"correct horse"));
        assert!(!verify(&phc, b"correct horsE"));
        assert!(!verify("not a hash", b"correct horse"));
        // Salted: the same password hashes differently each time.
        assert_ne!(phc, hash(b"correct horse").expect("hash"));
    }

    #[test]
    fn parses_users_skipping_comments_and_blank_lines() {
        let phc = hash(b"pw").expect("hash");
        let text = format!("# users\n\nalice:{phc}\r\n  # indented comment\nbob:{phc}\n");
        let file = parse(&text).expect("parses");
        assert_eq!(file.len(), 2);
        assert_eq!(file.hash_of("alice"), Some(phc.as_str()));
        assert_eq!(file.hash_of("carol"), None);
    }

    #[test]
    fn malformed_lines_name_the_line_and_problem() {
        let phc = hash(b"pw").expect("hash");
        assert_eq!(problem_at("# c\nalice\n"), (2, LineProblem::MissingColon));
        assert_eq!(problem_at(&format!(":{phc}\n")), (1, LineProblem::EmptyUsername));
        assert!(matches!(problem_at("alice:plaintext\n"), (1, LineProblem::BadHash(_))));
        assert!(matches!(
            problem_at("alice:$pbkdf2-sha256$i=1000$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA\n"),
            (1, LineProblem::UnsupportedAlgorithm(a)) if a == "pbkdf2-sha256"
        ));
        assert_eq!(
            problem_at(&format!("a:{phc}\n\na:{phc}\n")),
            (3, LineProblem::DuplicateUser("a".into()))
        );
        let message = parse("x\n").expect_err("malformed").to_string();
        assert!(message.starts_with("users.pw:1: "), "{message}");
    }

    #[test]
    fn set_and_remove_keep_other_lines() {
        let text = "# header\nalice:H1\nbob:H2\n";
        assert_eq!(set_user(text, "alice", "H3"), "# header\nalice:H3\nbob:H2\n");
        assert_eq!(set_user(text, "carol", "H4"), "# header\nalice:H1\nbob:H2\ncarol:H4\n");
        assert_eq!(set_user("", "carol", "H4"), "carol:H4\n");
        assert_eq!(remove_user(text, "alice"), ("# header\nbob:H2\n".to_string(), true));
        assert_eq!(remove_user(text, "zed"), (text.to_string(), false));
        // A commented-out line that looks like the user is left alone.
        assert_eq!(set_user("#alice:old\n", "alice", "H"), "#alice:old\nalice:H\n");
    }

    #[test]
    fn usernames_that_would_break_the_format_are_refused() {
        for bad in ["", "a:b", "a\nb", "#x"] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert!(check_username("alice smith").is_ok());
    }
}
