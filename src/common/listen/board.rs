//! The listeners a daemon has, or waits for, and whether each is bound: shared by the
//! retry thread (which binds) and the routes (which report).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::common::sync::lock;

/// One address and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub bound: bool,
    /// Why it is not bound (the last bind error).
    pub error: Option<String>,
}

/// Every address a daemon answers on, or will once bound; the first is the configured one.
#[derive(Debug, Clone)]
pub struct Listeners(Arc<Mutex<Vec<Listener>>>);

impl Listeners {
    pub fn new(all: Vec<Listener>) -> Self {
        Self(Arc::new(Mutex::new(all)))
    }

    /// One bound address (tests, and daemons that listen on loopback only).
    pub fn single(addr: SocketAddr) -> Self {
        Self::new(vec![Listener {
            addr,
            bound: true,
            error: None,
        }])
    }

    /// The configured address with the port actually bound: the one published in links.
    pub fn primary(&self) -> SocketAddr {
        lock(&self.0)
            .first()
            .map(|l| l.addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Every address, bound or not (the Host guard admits all of them).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        lock(&self.0).iter().map(|l| l.addr).collect()
    }

    pub fn snapshot(&self) -> Vec<Listener> {
        lock(&self.0).clone()
    }

    /// Records the outcome of a bind of `addr`.
    pub fn set(&self, addr: SocketAddr, result: Result<(), String>) {
        if let Some(l) = lock(&self.0).iter_mut().find(|l| l.addr == addr) {
            l.bound = result.is_ok();
            l.error = result.err();
        }
    }

    /// `[{url, bound, error?}]`.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.snapshot()
                .into_iter()
                .map(|l| {
                    let mut v = json!({ "url": format!("http://{}", l.addr), "bound": l.bound });
                    if let Some(e) = l.error {
                        v["error"] = Value::String(e);
                    }
                    v
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_listener_and_records_binds() {
        let tail: SocketAddr = "100.64.0.1:4317".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:4317".parse().unwrap();
        let l = Listeners::new(vec![
            Listener {
                addr: tail,
                bound: false,
                error: Some("not up".into()),
            },
            Listener {
                addr: lo,
                bound: true,
                error: None,
            },
        ]);
        assert_eq!(l.primary(), tail);
        assert_eq!(l.addrs(), vec![tail, lo]);
        assert_eq!(
            l.to_json(),
            json!([
                {"url": "http://100.64.0.1:4317", "bound": false, "error": "not up"},
                {"url": "http://127.0.0.1:4317", "bound": true},
            ])
        );
        l.set(tail, Ok(()));
        assert!(l.snapshot().iter().all(|x| x.bound && x.error.is_none()));
    }
}
