//! Authentication and authorization from files: the password file (`passwd`), the ACL file (`acl`) and the
//! per-listener anonymous policy, wrapped as the core's `Authenticator`. Loading files is I/O and happens here;
//! the checks themselves are deterministic functions of what was loaded.

mod acl;
mod cache;
mod filter;
pub mod passwd;
pub mod prompt;
mod verifier;

pub use acl::{AclError, AclFile};
pub use passwd::{PasswdError, PasswordFile};
pub use verifier::{Verdict, Verifier, VerifyQueue};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use cache::VerifiedCache;
use mqtt_core::broker::{AuthDecision, Authenticator, ClientIdentity, ConnectInfo, ConnectionId};
use mqtt_core::packet::ReasonCode;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why the password or ACL file could not be loaded.
#[derive(Debug)]
pub enum AuthFileError {
    Passwords(PasswdError),
    Acl(AclError),
}

impl fmt::Display for AuthFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFileError::Passwords(e) => write!(f, "{e}"),
            AuthFileError::Acl(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AuthFileError {}

/// Where the authenticator comes from: loaded at start-up and again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSource {
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// Per listener, in the driver's order: may clients without a user name connect?
    pub allow_anonymous: Vec<bool>,
    /// Per listener: does the transport vouch for the user name (a verified client certificate's name, which the
    /// core puts in place of whatever the CONNECT said, see `Config::identity_as_username`)? Such user names need
    /// no password.
    pub trusted_username: Vec<bool>,
}

impl AuthSource {
    pub fn load(&self) -> Result<FileAuthenticator, AuthFileError> {
        let passwords = match &self.password_file {
            Some(path) => Some(PasswordFile::load(path).map_err(AuthFileError::Passwords)?),
            None => None,
        };
        let acl = match &self.acl_file {
            Some(path) => Some(AclFile::load(path).map_err(AuthFileError::Acl)?),
            None => None,
        };
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Ok(FileAuthenticator {
            passwords,
            acl,
            allow_anonymous: self.allow_anonymous.clone(),
            trusted_username: self.trusted_username.clone(),
            cache: Arc::new(Mutex::new(VerifiedCache::new(key))),
            verifier: None,
        })
    }
}

/// The broker's authenticator when run as `mqtt-broker`.
///
/// - No user name: allowed where the listener allows anonymous clients, else 0x87 Not authorized.
/// - A user name with a password file: the password must verify, else 0x86 Bad User Name or Password (unknown
///   users included, after verifying their password against a stand-in hash: refusing an unknown user takes as
///   long as refusing a wrong password, so timing does not reveal which user names exist).
/// - A user name without a password file: treated like anonymous access (as Mosquitto does); the name is still
///   used for ACL sections, so do not rely on ACL user sections without a password file.
/// - No ACL file: every topic allowed. With one: what it grants.
///
/// A password that must be verified with Argon2 (not in the cache) is verified by the [`Verifier`] pool when one is
/// attached ([`FileAuthenticator::with_verifier`]): the answer is then `Pending` and the verdict comes later.
/// Everything else is decided at once.
pub struct FileAuthenticator {
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
    allow_anonymous: Vec<bool>,
    trusted_username: Vec<bool>,
    /// Shared with the verifier threads, which remember what they verified.
    cache: Arc<Mutex<VerifiedCache>>,
    verifier: Option<VerifyQueue>,
}

/// The outcome of a password check.
enum Check {
    /// No password file: user names are not checked.
    NoFile,
    Done(bool),
    /// Handed to the verifier pool.
    Pending,
}

impl FileAuthenticator {
    /// Verify uncached passwords on `queue`'s threads instead of the caller's.
    pub fn with_verifier(mut self, queue: VerifyQueue) -> FileAuthenticator {
        self.verifier = Some(queue);
        self
    }

    fn check_password(&mut self, conn: ConnectionId, user: &str, password: Option<&[u8]>) -> Check {
        let Some(file) = self.passwords.as_ref() else {
            return Check::NoFile;
        };
        let Some(password) = password else {
            return Check::Done(false);
        };
        let (phc, unknown_user) = match (file.hash_of(user), file.stand_in_hash()) {
            (Some(phc), _) => (phc, false),
            (None, Some(stand_in)) => (stand_in, true),
            (None, None) => return Check::Done(false),
        };
        if !unknown_user && (self.cache.lock().unwrap_or_else(|e| e.into_inner())).contains(user, phc, password) {
            return Check::Done(true);
        }
        let job = verifier::Job {
            conn,
            user: user.to_string(),
            phc: phc.to_string(),
            password: password.to_vec(),
            cache: Arc::clone(&self.cache),
            queued_at: Instant::now(),
            unknown_user,
        };
        let job = match &self.verifier {
            Some(queue) => match queue.submit(job) {
                Ok(()) => return Check::Pending,
                Err(job) => job,
            },
            None => job,
        };
        // No pool (tests, tools) or the pool is gone: verify here.
        Check::Done(verifier::verdict(&job) == AuthDecision::Allow { data: None })
    }
}

impl Authenticator for FileAuthenticator {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        if info.auth_method.is_some() {
            // Enhanced authentication is not offered [MQTT-4.12.0-1].
            return AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        let anonymous_ok = self.allow_anonymous.get(info.listener.0).copied().unwrap_or(false);
        let trusted = self.trusted_username.get(info.listener.0).copied().unwrap_or(false);
        if trusted && info.username.is_some() {
            // The certificate authenticated this user name; the ACL still applies.
            return AuthDecision::Allow { data: None };
        }
        let verdict = match info.username {
            Some(user) => match self.check_password(info.conn, user, info.password) {
                Check::NoFile => anonymous_ok,
                Check::Done(ok) => ok,
                Check::Pending => return AuthDecision::Pending,
            },
            None => anonymous_ok,
        };
        match (verdict, info.username, &self.passwords) {
            (true, _, _) => AuthDecision::Allow { data: None },
            (false, Some(_), Some(_)) => AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            (false, _, _) => AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED),
        }
    }

    fn authorize_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.may_publish(client, topic))
    }

    fn authorize_subscribe(&self, client: ClientIdentity<'_>, filter: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.may_subscribe(client, filter))
    }

    fn authorize_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.may_read(client, topic))
    }

    fn restricts_reads(&self) -> bool {
        self.acl.is_some()
    }
}

#[cfg(test)]
mod tests;
