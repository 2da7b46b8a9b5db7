//! A minimal MCP client over the Streamable HTTP transport (JSON answers), for the tests
//! of the conductor's `/mcp`: one session, requests numbered from 1, the bearer token
//! sent or not.

use serde_json::{json, Value};

use super::http::{Client, Resp};

pub struct Mcp {
    url: String,
    http: Client,
    pub session: String,
    pub version: String,
    token: Option<String>,
    next_id: u64,
}

impl Mcp {
    /// `initialize` at `version` against `<base>/mcp`, then `notifications/initialized`.
    #[track_caller]
    pub fn connect(base_url: &str, version: &str, token: Option<&str>) -> Mcp {
        let url = format!("{}/mcp", base_url.trim_end_matches('/'));
        let http = Client::new();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "baa-it", "version": "1"}}});
        let r = http.post_raw(&url, init.to_string().as_bytes(), &[]);
        let v = r.expect(200);
        let session = r
            .header("mcp-session-id")
            .unwrap_or_else(|| panic!("no Mcp-Session-Id: {v}"))
            .to_string();
        let mut m = Mcp {
            url,
            http,
            session,
            version: v["result"]["protocolVersion"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            token: token.map(str::to_string),
            next_id: 1,
        };
        let r = m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert_eq!(r.status, 202, "{}", r.body);
        m
    }

    /// Posts `msg` with the session (and token) headers.
    #[track_caller]
    pub fn send(&mut self, msg: &Value) -> Resp {
        self.send_raw(msg.to_string().as_bytes())
    }

    #[track_caller]
    pub fn send_raw(&mut self, body: &[u8]) -> Resp {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("Mcp-Session-Id", self.session.as_str()),
            ("MCP-Protocol-Version", self.version.as_str()),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        self.http.post_raw(&self.url, body, &headers)
    }

    /// A request; returns the whole JSON-RPC answer (asserting HTTP 200).
    #[track_caller]
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let v = self
            .send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .expect(200);
        assert_eq!(v["id"], json!(id), "{v}");
        v
    }

    /// A request's `result`, asserting it is not an error.
    #[track_caller]
    pub fn result(&mut self, method: &str, params: Value) -> Value {
        let v = self.request(method, params);
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// `tools/call` of `name`: the CallToolResult.
    #[track_caller]
    pub fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.result("tools/call", json!({"name": name, "arguments": arguments}))
    }

    /// `resources/read` of `uri`: the first content's text parsed as JSON.
    #[track_caller]
    pub fn read(&mut self, uri: &str) -> Value {
        let r = self.result("resources/read", json!({"uri": uri}));
        let text = r["contents"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// `DELETE /mcp` of this session.
    #[track_caller]
    pub fn close(&self) -> u16 {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .proxy(None)
            .build()
            .into();
        let r = agent
            .delete(&self.url)
            .header("Mcp-Session-Id", &self.session)
            .call()
            .unwrap_or_else(|e| panic!("DELETE /mcp: {e}"));
        r.status().as_u16()
    }
}
