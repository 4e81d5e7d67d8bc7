//! Reading a password from the terminal without echo (etcdctl's `speakeasy.Ask`).

use std::io::{BufRead, Write};

/// Prints `prompt` on stderr and reads a line with echo off (when stdin is a terminal).
pub(crate) fn ask_password(prompt: &str) -> std::io::Result<String> {
    let mut stderr = std::io::stderr();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it and fails harmlessly on non-ttys.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is stdin and `saved` is a valid termios to write into.
    let is_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if is_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: `quiet` is a copy of the terminal's settings with echo off.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if is_tty {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        let _ = stderr.write_all(b"\n");
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
