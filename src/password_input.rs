//! Reading a password for `vitalflow hash-password`: from a terminal without showing it, or one line
//! from a pipe; too short a password is refused before it is hashed.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;

/// Shortest password accepted, in characters (NIST SP 800-63B asks for at least 8; 12 for accounts
/// that reach patient data).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Reads one password line from standard input; on a terminal the typed characters are not shown.
pub fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        eprint!("Password (not shown): ");
        let hidden = EchoOff::new();
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        drop(hidden);
        eprintln!();
        read.context("reading the password from the terminal")?;
        line
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).context("reading the password from standard input")?;
        line
    };
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    check_strength(&password)?;
    Ok(password)
}

/// Refuses an empty or short password, saying what is needed.
pub fn check_strength(password: &str) -> anyhow::Result<()> {
    let chars = password.chars().count();
    if chars == 0 {
        anyhow::bail!("no password on standard input");
    }
    if chars < MIN_PASSWORD_CHARS {
        anyhow::bail!(
            "the password has {chars} characters; use at least {MIN_PASSWORD_CHARS} (a passphrase of a few words is easy to type)"
        );
    }
    Ok(())
}

/// The terminal's echo turned off while it lives, restored when dropped (also on an error).
struct EchoOff {
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new() -> EchoOff {
        let fd = libc::STDIN_FILENO;
        // SAFETY: termios is plain data; tcgetattr fills it for a valid descriptor or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return EchoOff { saved: None };
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: a valid descriptor and a termios read from it.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return EchoOff { saved: None };
        }
        EchoOff { saved: Some(saved) }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores the settings read from the same descriptor.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_empty_passwords_are_refused_with_the_rule() {
        assert!(check_strength("").unwrap_err().to_string().contains("no password"));
        let err = check_strength("hunter2").unwrap_err().to_string();
        assert!(err.contains("7 characters") && err.contains("at least 12"), "{err}");
        assert!(check_strength("correct horse battery").is_ok());
        // Characters, not bytes.
        assert!(check_strength("ÄÖÜäöüßÄÖÜäö").is_ok());
    }
}
