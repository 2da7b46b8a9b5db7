//! A scriptable upstream HTTP server for proxy tests, built on our own server so it
//! speaks exactly the HTTP the daemons speak.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baa::common::http::{Reply, Request, Response, Server, ServerConfig, ServerHandle};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    pub body: Value,
}

pub struct Stub {
    pub handle: Option<ServerHandle>,
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    /// Serves `f` on `addr` (use "127.0.0.1:0" for a free port).
    #[track_caller]
    pub fn start(addr: &str, f: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Stub {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler = Arc::new(move |req: &Request| {
            log.lock().unwrap().push(Seen {
                method: req.method.clone(),
                path: req.path.clone(),
                query: req.query.clone(),
                body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
            });
            Reply::Http(f(req))
        });
        let handle = Server::bind(addr, ServerConfig::default(), handler).expect("stub bind");
        let base = format!("http://{}", handle.local_addr());
        Stub {
            handle: Some(handle),
            base,
            seen,
        }
    }

    pub fn last(&self, path: &str) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.path == path)
            .cloned()
    }

    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop(Duration::from_secs(2));
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn json(status: u16, v: Value) -> Response {
    Response::json_value(status, &v, true)
}
