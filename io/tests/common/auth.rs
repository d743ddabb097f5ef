//! Password and ACL files for the authentication tests.

use super::BIN;
use std::path::Path;
use std::process::Command;

/// Adds `user` to the password file with the broker's own `passwd` command.
pub fn add_user(file: &Path, user: &str, password: &str) {
    let out = Command::new(BIN)
        .arg("passwd")
        .arg(file)
        .args([user, "--password", password])
        .output()
        .expect("run passwd");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A temp dir with `users.pw` (alice/apw, bob/bpw) and `acl` holding `acl`.
pub fn auth_files(acl: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(&dir.path().join("users.pw"), "alice", "apw");
    add_user(&dir.path().join("users.pw"), "bob", "bpw");
    std::fs::write(dir.path().join("acl"), acl).expect("write acl");
    dir
}
