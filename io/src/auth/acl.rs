//! The ACL file, in Mosquitto's form:
//!
//! ```text
//! # lines before any `user` line apply to anonymous clients
//! topic read public/#
//! user alice
//! topic readwrite home/alice/#
//! topic deny home/alice/secret
//! # `pattern` lines apply to every client, wherever they stand; %c is the client id, %u the user name
//! pattern write devices/%c/#
//! ```
//!
//! Access is `read`, `write`, `readwrite` (the default when omitted) or `deny`. A topic is allowed when some rule
//! that applies to the client grants the access and matches it, and no `deny` rule matching it applies. A
//! subscription is allowed when some read rule could match a topic of it (deliveries are then checked one by
//! one) and no `deny` rule covers all of it. A client with a user name but no `user` section gets the patterns
//! only. A pattern naming `%u` does not apply to anonymous clients; a substitution containing `/`, `+` or `#`
//! (which would change the filter's meaning) makes an allowing pattern not apply and a denying one deny all.

use super::filter;
use mqtt_core::broker::ClientIdentity;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::ReadWrite, _) | (Access::Read, Want::Read) | (Access::Write, Want::Write)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// What is wrong with one line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    UnknownKeyword(String),
    /// `user` without a name.
    MissingUser,
    /// `topic` / `pattern` without a filter.
    MissingFilter,
    /// Not a valid topic filter.
    BadFilter(String),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::UnknownKeyword(k) => write!(f, "unknown keyword {k:?} (expected user, topic or pattern)"),
            LineProblem::MissingUser => write!(f, "`user` needs a user name"),
            LineProblem::MissingFilter => write!(f, "missing topic filter"),
            LineProblem::BadFilter(t) => write!(f, "invalid topic filter {t:?}"),
        }
    }
}

#[derive(Debug)]
pub enum AclError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Malformed {
        path: PathBuf,
        line: usize,
        problem: LineProblem,
    },
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclError::Read { path, source } => write!(f, "cannot read ACL file {}: {source}", path.display()),
            AclError::Malformed { path, line, problem } => write!(f, "{}:{line}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for AclError {}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: BTreeMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl AclFile {
    pub fn load(path: &Path) -> Result<AclFile, AclError> {
        let text = std::fs::read_to_string(path).map_err(|source| AclError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        AclFile::parse(path, &text)
    }

    /// Parses a file's text; `path` is for error messages.
    pub fn parse(path: &Path, text: &str) -> Result<AclFile, AclError> {
        let mut acl = AclFile::default();
        let mut section: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let malformed = |problem| AclError::Malformed {
                path: path.to_path_buf(),
                line: index + 1,
                problem,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" if rest.is_empty() => return Err(malformed(LineProblem::MissingUser)),
                "user" => {
                    acl.users.entry(rest.to_string()).or_default();
                    section = Some(rest.to_string());
                }
                "topic" => {
                    let rule = parse_rule(rest).map_err(malformed)?;
                    match &section {
                        Some(user) => acl.users.entry(user.clone()).or_default().push(rule),
                        None => acl.anonymous.push(rule),
                    }
                }
                "pattern" => acl.patterns.push(parse_rule(rest).map_err(malformed)?),
                other => return Err(malformed(LineProblem::UnknownKeyword(other.to_string()))),
            }
        }
        Ok(acl)
    }

    pub fn may_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.may_access(client, topic, Want::Write)
    }

    pub fn may_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.may_access(client, topic, Want::Read)
    }

    pub fn may_subscribe(&self, client: ClientIdentity<'_>, wanted: &str) -> bool {
        let mut granted = false;
        for (rule, filter) in self.applicable(client) {
            match (rule.access, filter) {
                (Access::Deny, None) => return false,
                (Access::Deny, Some(f)) if filter::covers(&f, wanted) => return false,
                (access, Some(f)) if access.grants(Want::Read) && filter::overlaps(&f, wanted) => granted = true,
                _ => {}
            }
        }
        granted
    }

    fn may_access(&self, client: ClientIdentity<'_>, topic: &str, want: Want) -> bool {
        let mut granted = false;
        for (rule, filter) in self.applicable(client) {
            match (rule.access, filter) {
                (Access::Deny, None) => return false,
                (Access::Deny, Some(f)) if filter::matches(&f, topic) => return false,
                (access, Some(f)) if access.grants(want) && filter::matches(&f, topic) => granted = true,
                _ => {}
            }
        }
        granted
    }

    /// The rules that apply to `client`, each with its filter after substitution (`None`: the substitution was
    /// unsafe, see the module comment).
    fn applicable<'s>(&'s self, client: ClientIdentity<'s>) -> impl Iterator<Item = (&'s Rule, Option<String>)> + 's {
        let own = match client.username {
            Some(user) => self.users.get(user).map(Vec::as_slice).unwrap_or_default(),
            None => self.anonymous.as_slice(),
        };
        let own = own.iter().map(|rule| (rule, Some(rule.filter.clone())));
        let patterns = self.patterns.iter().filter_map(move |rule| {
            if rule.filter.contains("%u") && client.username.is_none() {
                return None;
            }
            Some((rule, substitute(&rule.filter, client)))
        });
        own.chain(patterns)
    }
}

fn parse_rule(rest: &str) -> Result<Rule, LineProblem> {
    let (first, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let access = match first {
        "read" => Some(Access::Read),
        "write" => Some(Access::Write),
        "readwrite" => Some(Access::ReadWrite),
        "deny" => Some(Access::Deny),
        _ => None,
    };
    // Topic filters may contain spaces, so the filter is the rest of the line; a lone access word is a filter.
    let (access, filter) = match access {
        Some(access) if !tail.trim().is_empty() => (access, tail.trim()),
        _ => (Access::ReadWrite, rest),
    };
    if filter.is_empty() {
        return Err(LineProblem::MissingFilter);
    }
    if mqtt_core::topic::validate_topic_filter(filter).is_err() {
        return Err(LineProblem::BadFilter(filter.to_string()));
    }
    Ok(Rule {
        access,
        filter: filter.to_string(),
    })
}

/// `%c` and `%u` replaced; `None` when a value would change the filter's structure.
fn substitute(pattern: &str, client: ClientIdentity<'_>) -> Option<String> {
    let unsafe_value = |v: &str| v.contains(['/', '+', '#']);
    let mut out = pattern.to_string();
    if pattern.contains("%c") {
        if unsafe_value(client.client_id) {
            return None;
        }
        out = out.replace("%c", client.client_id);
    }
    if pattern.contains("%u") {
        let user = client.username?;
        if unsafe_value(user) {
            return None;
        }
        out = out.replace("%u", user);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# anonymous
topic read public/#

user alice
topic readwrite home/alice/#
topic deny home/alice/secret
topic write  alerts/with space
user bob
topic home/bob/#
pattern read devices/%c/status
pattern write users/%u/out/#
pattern deny %u/forbidden/#
";

    fn sample() -> AclFile {
        AclFile::parse(Path::new("acl"), SAMPLE).expect("sample parses")
    }

    fn id<'a>(client_id: &'a str, username: Option<&'a str>) -> ClientIdentity<'a> {
        ClientIdentity { client_id, username }
    }

    fn problem_at(text: &str) -> (usize, LineProblem) {
        match AclFile::parse(Path::new("acl"), text) {
            Err(AclError::Malformed { line, problem, .. }) => (line, problem),
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn anonymous_clients_get_the_lines_before_any_user() {
        let acl = sample();
        let anon = id("c1", None);
        assert!(acl.may_read(anon, "public/news"));
        assert!(!acl.may_publish(anon, "public/news"), "read only");
        assert!(!acl.may_read(anon, "home/alice/x"));
    }

    #[test]
    fn user_sections_grant_and_deny() {
        let acl = sample();
        let alice = id("c1", Some("alice"));
        assert!(acl.may_publish(alice, "home/alice/x"));
        assert!(acl.may_read(alice, "home/alice/x"));
        assert!(!acl.may_read(alice, "home/alice/secret"), "deny wins");
        assert!(!acl.may_read(alice, "public/news"), "anonymous lines are not alice's");
        assert!(acl.may_publish(alice, "alerts/with space"));
        assert!(!acl.may_read(alice, "alerts/with space"), "write only");
        let bob = id("c2", Some("bob"));
        assert!(
            acl.may_publish(bob, "home/bob/x") && acl.may_read(bob, "home/bob/x"),
            "default readwrite"
        );
        // A user without a section gets only the patterns.
        let carol = id("c3", Some("carol"));
        assert!(!acl.may_read(carol, "home/alice/x"));
        assert!(acl.may_publish(carol, "users/carol/out/1"));
    }

    #[test]
    fn patterns_substitute_client_id_and_username() {
        let acl = sample();
        assert!(acl.may_read(id("dev7", None), "devices/dev7/status"));
        assert!(!acl.may_read(id("dev7", None), "devices/dev8/status"));
        assert!(acl.may_publish(id("x", Some("dave")), "users/dave/out/a"));
        assert!(!acl.may_publish(id("x", Some("dave")), "users/erin/out/a"));
        // %u patterns do not apply to anonymous clients.
        assert!(!acl.may_publish(id("x", None), "users//out/a"));
        // Values that would change the filter: allowing patterns do not apply, denying ones deny everything.
        assert!(!acl.may_read(id("a/+", None), "devices/a/x/status"));
        assert!(!acl.may_publish(id("x", Some("al#")), "users/al#/out"));
        let acl = AclFile::parse(Path::new("acl"), "user a+b\ntopic #\npattern deny %u/x\n").expect("parses");
        assert!(!acl.may_read(id("x", Some("a+b")), "anything"));
    }

    #[test]
    fn subscriptions_need_a_possible_read_and_no_covering_deny() {
        let acl = sample();
        let alice = id("c1", Some("alice"));
        // `#` may hold readable topics; deliveries are filtered one by one.
        assert!(acl.may_subscribe(alice, "#"));
        assert!(acl.may_subscribe(alice, "home/+/x"));
        assert!(!acl.may_subscribe(alice, "home/alice/secret"), "covered by deny");
        assert!(!acl.may_subscribe(alice, "home/bob/#"), "no read rule overlaps");
        let anon = id("c9", None);
        assert!(acl.may_subscribe(anon, "public/+"));
        assert!(!acl.may_subscribe(anon, "$SYS/#"));
    }

    #[test]
    fn malformed_lines_name_the_line() {
        assert_eq!(
            problem_at("topic a\nusr bob\n"),
            (2, LineProblem::UnknownKeyword("usr".into()))
        );
        assert_eq!(problem_at("user\n"), (1, LineProblem::MissingUser));
        assert_eq!(problem_at("\n\ntopic\n"), (3, LineProblem::MissingFilter));
        assert_eq!(
            problem_at("topic read a/#/b\n"),
            (1, LineProblem::BadFilter("a/#/b".into()))
        );
        let message = AclFile::parse(Path::new("/etc/acl"), "bogus\n")
            .expect_err("malformed")
            .to_string();
        assert!(message.starts_with("/etc/acl:1: "), "{message}");
    }

    #[test]
    fn lone_access_word_is_a_topic() {
        let acl = AclFile::parse(Path::new("acl"), "topic read\n").expect("parses");
        assert!(acl.may_publish(id("c", None), "read"));
    }
}
