//! Open streams per authenticated host. Each open stream may buffer one message of up to
//! `server.max_message_bytes` while it arrives, so without a quota one host's certificate
//! (a compromised sensor) could open `max_connections × max_streams_per_connection` streams
//! and make the collector buffer gigabytes, and take every connection slot from the fleet.
//! With it, one host holds at most `server.max_streams_per_host` streams; a sensor needs
//! one, plus a few while a reconnect overlaps the stream the collector has not yet seen die.
//!
//! Only certificate hosts are counted: the local root sensor is trusted, and an
//! unauthenticated listener (plaintext loopback, asked for explicitly) is bounded by the
//! connection limits alone.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct StreamQuota {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream of a host; its slot is given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    quota: Arc<StreamQuota>,
    host: String,
}

impl StreamQuota {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more stream of `host`, or `None` when it already has `max` open.
    pub fn open(self: &Arc<Self>, host: &str) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(host.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            quota: self.clone(),
            host: host.to_string(),
        })
    }

    /// Streams `host` has open now.
    pub fn open_for(&self, host: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(host).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.quota.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_gets_at_most_max_slots_and_gets_them_back() {
        let q = StreamQuota::new(2);
        let a1 = q.open("a").unwrap();
        let a2 = q.open("a").unwrap();
        assert!(q.open("a").is_none());
        let b = q.open("b").unwrap();
        assert_eq!((q.open_for("a"), q.open_for("b")), (2, 1));
        drop(a1);
        let a3 = q.open("a").unwrap();
        drop((a2, a3, b));
        assert_eq!((q.open_for("a"), q.open_for("b")), (0, 0));
        assert!(
            q.open.lock().unwrap().is_empty(),
            "no entry kept for idle hosts"
        );
    }
}
