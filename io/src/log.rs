//! A small logger behind the `log` facade: one line per record, UTC timestamp, to stderr or to a file that can be
//! reopened (SIGHUP) so logrotate can move it away.

use crate::config::LogLevel;
use log::{LevelFilter, Log, Metadata, Record};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Setting the logger up failed.
#[derive(Debug)]
pub enum LogError {
    /// The log file could not be opened for appending.
    Open { path: PathBuf, source: std::io::Error },
    /// A logger was already installed in this process.
    AlreadyInstalled,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Open { path, source } => {
                write!(f, "cannot open log file {}: {source}", path.display())
            }
            LogError::AlreadyInstalled => write!(f, "a logger is already installed"),
        }
    }
}

impl std::error::Error for LogError {}

enum Sink {
    Stderr,
    File(File),
}

/// The process-wide logger.
pub struct Logger {
    level: LevelFilter,
    path: Option<PathBuf>,
    sink: Mutex<Sink>,
}

pub fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

fn open(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Install the logger for the whole process. Returns it so the driver can reopen the file on SIGHUP.
pub fn init(level: LogLevel, file: Option<&Path>) -> Result<&'static Logger, LogError> {
    let sink = match file {
        Some(path) => Sink::File(open(path)?),
        None => Sink::Stderr,
    };
    // The logger lives as long as the process: `log` wants a 'static reference.
    let logger: &'static Logger = Box::leak(Box::new(Logger {
        level: level_filter(level),
        path: file.map(Path::to_path_buf),
        sink: Mutex::new(sink),
    }));
    log::set_logger(logger).map_err(|_| LogError::AlreadyInstalled)?;
    log::set_max_level(logger.level);
    Ok(logger)
}

impl Logger {
    /// Reopen the log file under its configured name (after logrotate renamed the old one). A no-op on stderr.
    pub fn reopen(&self) -> Result<(), LogError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = open(path)?;
        // A poisoned lock only means another thread panicked mid-write; the sink itself is still usable.
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        *sink = Sink::File(file);
        Ok(())
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Format first so the line goes out in one write and lines from different threads never interleave.
        let line = format!(
            "{} {:<5} {}\n",
            Timestamp(SystemTime::now()),
            record.level(),
            record.args()
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        // A failed log write (disk full, stderr closed) must not take the broker down: drop the line.
        let _ = match &mut *sink {
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Sink::File(file) => file.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match &mut *sink {
            Sink::Stderr => std::io::stderr().flush(),
            Sink::File(file) => file.flush(),
        };
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T06:00:00.123Z`.
pub struct Timestamp(pub SystemTime);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A clock before 1970 is a broken clock; print the epoch rather than fail.
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            since.subsec_millis()
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar, by counting 400-year eras
/// of 146,097 days with years starting in March (so the leap day falls at the end of the year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_is_rfc3339_utc_with_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_586_400_123);
        assert_eq!(Timestamp(t).to_string(), "2026-11-25T06:00:00.123Z");
        assert_eq!(Timestamp(UNIX_EPOCH).to_string(), "1970-01-01T00:00:00.000Z");
        // Leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(Timestamp(t).to_string(), "2000-02-29T00:00:00.000Z");
    }
}
