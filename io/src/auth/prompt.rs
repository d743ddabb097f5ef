//! Reading a password for `mqtt-broker passwd`: from a terminal without echo (asked twice), otherwise one line
//! of standard input (for scripts).

use std::io::{self, BufRead, Write};

/// Why no password could be read.
#[derive(Debug)]
pub enum PromptError {
    Io(io::Error),
    /// The two entries typed at the terminal differ.
    Mismatch,
    Empty,
}

impl std::fmt::Display for PromptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptError::Io(e) => write!(f, "cannot read password: {e}"),
            PromptError::Mismatch => write!(f, "passwords do not match"),
            PromptError::Empty => write!(f, "empty password"),
        }
    }
}

impl std::error::Error for PromptError {}

/// The password from standard input: prompted for twice without echo on a terminal, else the first line.
pub fn read_password() -> Result<String, PromptError> {
    let stdin = io::stdin();
    // SAFETY: isatty only inspects the descriptor.
    let is_tty = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
    let password = if is_tty {
        let first = read_hidden("Password: ")?;
        let second = read_hidden("Reenter password: ")?;
        if first != second {
            return Err(PromptError::Mismatch);
        }
        first
    } else {
        read_line(&mut stdin.lock())?
    };
    if password.is_empty() {
        return Err(PromptError::Empty);
    }
    Ok(password)
}

fn read_line(input: &mut impl BufRead) -> Result<String, PromptError> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(PromptError::Io)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Prompts on stderr and reads one line with terminal echo switched off, restoring it afterwards.
fn read_hidden(prompt: &str) -> Result<String, PromptError> {
    eprint!("{prompt}");
    let _ = io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal descriptor and reports failure otherwise.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(PromptError::Io(io::Error::last_os_error()));
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: `quiet` is a valid termios derived from the terminal's own.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(PromptError::Io(io::Error::last_os_error()));
    }
    let result = read_line(&mut io::stdin().lock());
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    result
}
