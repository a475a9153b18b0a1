//! Captured output with a bounded memory cost. A remote command can print gigabytes (a
//! verbose installer, a runaway loop); medic keeps the first and the last `cap` bytes,
//! which is where the command line echo and the final error are, and counts the rest.

use std::collections::VecDeque;

/// The head and tail of one output stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Captured {
    /// Keeps at most `cap` bytes of head and `cap` bytes of tail.
    pub fn new(cap: usize) -> Self {
        Captured {
            cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    /// A capture of `data`, whole (for tests and fakes).
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut c = Captured::new(data.len().max(1));
        c.push(data);
        c
    }

    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.head.len() < self.cap {
            let n = (self.cap - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.is_empty() {
            return;
        }
        if data.len() >= self.cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.cap..]);
        } else {
            let overflow = (self.tail.len() + data.len()).saturating_sub(self.cap);
            self.tail.drain(..overflow);
            self.tail.extend(data);
        }
    }

    /// Bytes the command wrote, kept or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes kept (head plus tail).
    pub fn kept(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn truncated(&self) -> bool {
        self.total > self.kept() as u64
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }

    /// The kept bytes as text (invalid UTF-8 replaced), with a marker where bytes were
    /// dropped.
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.head).into_owned();
        if self.truncated() {
            let omitted = self.total - self.kept() as u64;
            s.push_str(&format!("\n[... {omitted} bytes omitted ...]\n"));
        }
        s.push_str(&String::from_utf8_lossy(&self.tail()));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail() {
        let mut c = Captured::new(4);
        c.push(b"abc");
        assert_eq!(c.text(), "abc");
        c.push(b"defgh");
        c.push(b"ij");
        assert_eq!(c.head(), b"abcd");
        assert_eq!(c.tail(), b"ghij");
        assert_eq!(c.total(), 10);
        assert!(c.truncated());
        assert_eq!(c.text(), "abcd\n[... 2 bytes omitted ...]\nghij");
        c.push(&[b'z'; 100]);
        assert_eq!(c.tail(), b"zzzz");
        assert_eq!(c.kept(), 8);
    }

    #[test]
    fn exact_fit_is_not_truncated() {
        let mut c = Captured::new(2);
        c.push(b"abcd");
        assert!(!c.truncated());
        assert_eq!(c.text(), "abcd");
    }
}
