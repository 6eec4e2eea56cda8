//! Following the console log QEMU writes (`logfile=` on the serial chardev).

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Reads whole lines appended to a file, from a given offset on.
pub struct Follower {
    path: PathBuf,
    pos: u64,
    partial: Vec<u8>,
}

impl Follower {
    pub fn from_start(path: &Path) -> Follower {
        Follower {
            path: path.to_path_buf(),
            pos: 0,
            partial: Vec::new(),
        }
    }
    pub fn from_end(path: &Path) -> Follower {
        let pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Follower {
            path: path.to_path_buf(),
            pos,
            partial: Vec::new(),
        }
    }

    /// New complete lines since the last call (ANSI escapes and CRs removed).
    pub fn poll(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.pos {
            self.pos = 0; // truncated: a new run
            self.partial.clear();
        }
        if len == self.pos || f.seek(SeekFrom::Start(self.pos)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.take(4 << 20).read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.pos += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            lines.push(clean_line(&line));
        }
        lines
    }

    /// Poll every `every` forever, calling `f` for each line; stops when `f` returns false.
    pub async fn follow(mut self, every: Duration, mut f: impl FnMut(String) -> bool) {
        loop {
            for l in self.poll() {
                if !f(l) {
                    return;
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Strip CR, ANSI escape sequences and other control bytes from a console line.
pub fn clean_line(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        if c == '\n' || c == '\r' || (c.is_control() && c != '\t') {
            continue;
        }
        out.push(c);
    }
    out
}

/// The last `n` lines of a console log (for error messages).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let start = bytes.len().saturating_sub(64 * 1024);
    let mut q: VecDeque<String> = VecDeque::with_capacity(n);
    for l in bytes[start..].split(|b| *b == b'\n') {
        let l = clean_line(l);
        if l.trim().is_empty() {
            continue;
        }
        if q.len() == n {
            q.pop_front();
        }
        q.push_back(l);
    }
    q.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follower_returns_whole_lines_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(&p, b"one\r\ntw").unwrap();
        let mut f = Follower::from_start(&p);
        assert_eq!(f.poll(), vec!["one"]);
        use std::io::Write;
        let mut h = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        h.write_all(b"o\x1b[0;32m OK \x1b[0m\nthree").unwrap();
        assert_eq!(f.poll(), vec!["two OK "]);
        assert_eq!(tail(&p, 2), vec!["two OK ", "three"]);
    }
}
