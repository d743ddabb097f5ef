//! Seeds known to fail from a gap in the reference model (not from a broker bug): listed in a file so that CI
//! stays red for any new failure while the list is worked down. A listed seed that passes is reported too, so the
//! list cannot outlive the gaps it names.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// A list that could not be read, naming the file and line.
#[derive(Debug)]
pub enum KnownGapsError {
    Io { path: PathBuf, error: std::io::Error },
    BadLine { path: PathBuf, line: usize, text: String },
}

impl fmt::Display for KnownGapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownGapsError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            KnownGapsError::BadLine { path, line, text } => {
                write!(f, "{}:{line}: not a seed: {text:?}", path.display())
            }
        }
    }
}

impl std::error::Error for KnownGapsError {}

/// Reads one seed per line; `#` starts a comment, blank lines are skipped.
pub fn read(path: &Path) -> Result<BTreeSet<u64>, KnownGapsError> {
    let text = std::fs::read_to_string(path).map_err(|error| KnownGapsError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    parse(&text).map_err(|(line, text)| KnownGapsError::BadLine {
        path: path.to_path_buf(),
        line,
        text,
    })
}

/// The seeds of `text`, or the first bad line (1-based) and its text.
pub fn parse(text: &str) -> Result<BTreeSet<u64>, (usize, String)> {
    let mut seeds = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let seed = content.parse().map_err(|_| (n + 1, line.to_string()))?;
        seeds.insert(seed);
    }
    Ok(seeds)
}

/// How a run's failures compare with the known gaps.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Failures of seeds not on the list.
    pub unexpected: usize,
    /// Failures of listed seeds.
    pub known: usize,
    /// Listed seeds within the run's range that passed.
    pub fixed: Vec<u64>,
}

/// Judges the failures of a run of seeds `first..first + seeds_run` (seeds run in order).
pub fn judge(known: &BTreeSet<u64>, first: u64, seeds_run: u64, failures: &[sim::Failure]) -> Verdict {
    let failed: BTreeSet<u64> = failures.iter().map(|f| f.seed).collect();
    let known_failed = failed.intersection(known).count();
    Verdict {
        unexpected: failed.len() - known_failed,
        known: known_failed,
        fixed: known
            .range(first..first.saturating_add(seeds_run))
            .filter(|seed| !failed.contains(seed))
            .copied()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blank_lines_are_skipped_and_a_bad_line_is_named() {
        let seeds = parse("# gaps\n7724 # retained after recovery\n\n8512\n").unwrap();
        assert_eq!(seeds.into_iter().collect::<Vec<_>>(), vec![7724, 8512]);
        assert_eq!(parse("12\nseven\n"), Err((2, "seven".to_string())));
    }

    #[test]
    fn listed_failures_are_known_others_unexpected_and_passing_listed_seeds_fixed() {
        let known: BTreeSet<u64> = [5, 9, 50].into_iter().collect();
        let failures = [failure(5), failure(7)];
        let verdict = judge(&known, 1, 20, &failures);
        assert_eq!(
            verdict,
            Verdict {
                unexpected: 1,
                known: 1,
                fixed: vec![9]
            }
        );
    }

    fn failure(seed: u64) -> sim::Failure {
        sim::Failure {
            seed,
            violation: "x".into(),
            trace_tail: Vec::new(),
            trace_hash: 0,
        }
    }
}
