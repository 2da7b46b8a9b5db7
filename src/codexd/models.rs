//! The app-server's model catalog (`model/list`): cached per child generation for
//! [`MODELS_TTL`], served as `GET /v1/codexd/models`, and used to refuse a session or turn
//! create whose `model` is unknown or whose `effort` that model does not support — with a
//! 400 that lists the allowed values, before the child accepts a turn it would fail
//! upstream (0.169.0 takes any `effort` string without a word).
//!
//! The check never blocks a request on the catalog itself: when `model/list` fails, the
//! request goes on unchecked and a log line says so. A failure is remembered for
//! [`FAILURE_BACKOFF`] so a broken child is not asked again on every request.
//! `BAA_CODEXD_MODEL_CHECK=off` turns the check off: codex lists its built-in catalog
//! whatever the provider, so a local model server's names are not in it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

use crate::config::ModelCheck;
use crate::json_path::str_at;
use crate::rpc::Ask;
use crate::rpc_http::rpc_error;

/// How long a fetched catalog is served before `model/list` is asked again.
pub const MODELS_TTL: Duration = Duration::from_secs(300);
/// How long a failed `model/list` is not retried by the create check.
const FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// Pages of `model/list` read at most (0.169.0 answers in one).
const MAX_PAGES: usize = 20;

/// One fetched catalog, hidden models included (they can be used, just not picked).
#[derive(Debug)]
pub struct Catalog {
    pub generation: u64,
    fetched: Instant,
    pub fetched_at: String,
    pub models: Vec<Value>,
}

impl Catalog {
    /// The entry whose `id` or `model` is `name`.
    pub fn find(&self, name: &str) -> Option<&Value> {
        self.models
            .iter()
            .find(|m| str_at(m, &["id"]) == Some(name) || str_at(m, &["model"]) == Some(name))
    }

    /// Every name a create accepts, in catalog order.
    pub fn names(&self) -> Vec<String> {
        self.models
            .iter()
            .filter_map(|m| str_at(m, &["id"]).map(str::to_string))
            .collect()
    }
}

/// The cache; the catalog and the last failure are read and replaced under short locks,
/// and `fetch` serializes the `model/list` calls themselves (never held with the others).
pub struct Models {
    /// `BAA_CODEXD_MODEL_CHECK`.
    check: ModelCheck,
    /// How long each `model/list` page may take (the daemon's request timeout).
    timeout: Duration,
    catalog: Mutex<Option<Arc<Catalog>>>,
    failure: Mutex<Option<(u64, Instant, String)>>,
    fetch: Mutex<()>,
}

/// A model's reasoning efforts, as plain strings.
pub fn efforts(model: &Value) -> Vec<String> {
    model
        .get("supportedReasoningEfforts")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|e| {
                    str_at(e, &["reasoningEffort"])
                        .or_else(|| e.as_str())
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks `model` (if given) against the catalog, then `effort` (if given) against the
/// efforts of `model`, or of `current` (the session's model) when the request names none.
/// An effort for a model outside the catalog is not checked: nothing is known about it.
pub fn check(
    catalog: &Catalog,
    model: Option<&str>,
    effort: Option<&str>,
    current: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(name) = model {
        if catalog.find(name).is_none() {
            let allowed = catalog.names();
            return Err(ApiError::bad_request(
                "unknown_model",
                format!(
                    "Unknown model \"{name}\". Allowed: {}. (GET /v1/codexd/models lists them with their efforts.)",
                    allowed.join(", ")
                ),
            )
            .with_details(json!({"model": name, "allowed": allowed})));
        }
    }
    let (Some(effort), Some(name)) = (effort, model.or(current)) else {
        return Ok(());
    };
    let Some(entry) = catalog.find(name) else {
        return Ok(());
    };
    let allowed = efforts(entry);
    if allowed.is_empty() || allowed.iter().any(|e| e == effort) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "unsupported_effort",
        format!(
            "Model \"{name}\" does not support effort \"{effort}\". Allowed: {}.",
            allowed.join(", ")
        ),
    )
    .with_details(json!({"model": name, "effort": effort, "allowed": allowed})))
}

impl Models {
    pub fn new(check: ModelCheck, timeout: Duration) -> Models {
        Models {
            check,
            timeout,
            catalog: Mutex::new(None),
            failure: Mutex::new(None),
            fetch: Mutex::new(()),
        }
    }

    /// The catalog of the current child: the cached one while fresh, else `model/list`
    /// now (every page, hidden models included). `refresh` skips the cache.
    pub fn catalog(&self, child: &impl Ask, refresh: bool) -> Result<Arc<Catalog>, ApiError> {
        let generation = child.generation();
        let fresh =
            |c: &Arc<Catalog>| c.generation == generation && c.fetched.elapsed() < MODELS_TTL;
        if !refresh {
            if let Some(c) = lock(&self.catalog).as_ref().filter(|c| fresh(c)) {
                return Ok(c.clone());
            }
        }
        let started = Instant::now();
        let _one_at_a_time = lock(&self.fetch);
        // Someone else may have fetched while this one waited.
        if let Some(c) = lock(&self.catalog)
            .as_ref()
            .filter(|c| fresh(c) && (!refresh || c.fetched >= started))
        {
            return Ok(c.clone());
        }
        let mut models = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = json!({"includeHidden": true});
            if let Some(c) = &cursor {
                params["cursor"] = json!(c);
            }
            let page = child.ask("model/list", params, self.timeout).map_err(|e| {
                let e = rpc_error(e);
                *lock(&self.failure) = Some((generation, Instant::now(), e.message.clone()));
                e
            })?;
            if let Some(data) = page.get("data").and_then(Value::as_array) {
                models.extend(data.iter().filter(|m| m.is_object()).cloned());
            }
            cursor = str_at(&page, &["nextCursor"]).map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        let catalog = Arc::new(Catalog {
            generation,
            fetched: Instant::now(),
            fetched_at: now_rfc3339(),
            models,
        });
        *lock(&self.catalog) = Some(catalog.clone());
        *lock(&self.failure) = None;
        Ok(catalog)
    }

    /// `GET /v1/codexd/models`.
    pub fn list_json(
        &self,
        child: &impl Ask,
        refresh: bool,
        include_hidden: bool,
    ) -> Result<Value, ApiError> {
        let catalog = self.catalog(child, refresh)?;
        let models: Vec<Value> = catalog
            .models
            .iter()
            .filter(|m| include_hidden || m.get("hidden") != Some(&Value::Bool(true)))
            .map(|m| {
                let mut m = m.clone();
                m["reasoningEfforts"] = json!(efforts(&m));
                m
            })
            .collect();
        let default = catalog
            .models
            .iter()
            .find(|m| m.get("isDefault") == Some(&Value::Bool(true)))
            .and_then(|m| str_at(m, &["id"]));
        Ok(json!({
            "count": models.len(),
            "models": models,
            "defaultModel": default,
            "fetchedAt": catalog.fetched_at,
            "ttlMs": MODELS_TTL.as_millis() as u64,
            "modelCheck": self.check.as_str(),
        }))
    }

    /// The create check (see the module doc): Err only for a model or effort the catalog
    /// rules out; a catalog that cannot be had lets the request through, with a log line.
    /// `child` is the current one (`None`: the request fails on its own with a 503).
    pub fn check_request(
        &self,
        child: Option<&impl Ask>,
        model: Option<&str>,
        effort: Option<&str>,
        current: Option<&str>,
    ) -> Result<(), ApiError> {
        if self.check == ModelCheck::Off || (model.is_none() && effort.is_none()) {
            return Ok(());
        }
        let Some(child) = child else {
            return Ok(());
        };
        let generation = child.generation();
        let recent_failure = lock(&self.failure)
            .clone()
            .filter(|(g, at, _)| *g == generation && at.elapsed() < FAILURE_BACKOFF);
        let catalog = match recent_failure {
            Some((_, _, why)) => Err(why),
            None => self.catalog(child, false).map_err(|e| e.message),
        };
        match catalog {
            Ok(c) => check(&c, model, effort, current),
            Err(why) => {
                log::warn!(
                    "model/list is not available ({why}); model {} and effort {} of this request are not checked",
                    model.unwrap_or("-"),
                    effort.unwrap_or("-")
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::RpcError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A child of generation `generation` whose `model/list` answers two pages, or fails.
    struct Child {
        generation: u64,
        fail: bool,
        calls: AtomicUsize,
    }

    impl Child {
        fn new(generation: u64, fail: bool) -> Child {
            Child {
                generation,
                fail,
                calls: AtomicUsize::new(0),
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Ask for Child {
        fn generation(&self) -> u64 {
            self.generation
        }

        fn ask(&self, method: &str, params: Value, _: Duration) -> Result<Value, RpcError> {
            assert_eq!(method, "model/list");
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(RpcError::ChildGone);
            }
            let effort = |e: &str| json!([{"reasoningEffort": e}]);
            Ok(match params.get("cursor").and_then(Value::as_str) {
                None => {
                    json!({"data": [{"id": "gpt-5.5", "isDefault": true, "supportedReasoningEfforts": effort("high")}], "nextCursor": "p2"})
                }
                Some(_) => {
                    json!({"data": [{"id": "hidden-one", "hidden": true}, "not an object"], "nextCursor": null})
                }
            })
        }
    }

    fn models() -> Models {
        Models::new(ModelCheck::Catalog, Duration::from_secs(1))
    }

    #[test]
    fn the_catalog_reads_every_page_once_per_child_until_refreshed() {
        let m = models();
        let one = Child::new(1, false);
        let list = m.list_json(&one, false, false).unwrap();
        assert_eq!(
            (
                &list["count"],
                &list["defaultModel"],
                &list["models"][0]["reasoningEfforts"]
            ),
            (&json!(1), &json!("gpt-5.5"), &json!(["high"]))
        );
        assert_eq!(m.list_json(&one, false, true).unwrap()["count"], 2);
        assert_eq!(one.calls(), 2, "two pages, then the cache");
        m.catalog(&one, true).unwrap();
        assert_eq!(one.calls(), 4, "refresh reads again");
        let two = Child::new(2, false);
        m.catalog(&two, false).unwrap();
        assert_eq!(two.calls(), 2, "a new child has its own catalog");
    }

    #[test]
    fn the_create_check_refuses_only_what_the_catalog_rules_out() {
        let m = models();
        let child = Child::new(1, false);
        let e = m
            .check_request(Some(&child), Some("gpt-9"), None, None)
            .unwrap_err();
        assert_eq!(e.code, "unknown_model");
        assert_eq!(
            m.check_request(Some(&child), None, Some("high"), Some("gpt-5.5")),
            Ok(())
        );
        assert_eq!(
            m.check_request(None::<&Child>, Some("gpt-9"), None, None),
            Ok(()),
            "no child"
        );
        let off = Models::new(ModelCheck::Off, Duration::from_secs(1));
        assert_eq!(
            off.check_request(Some(&child), Some("gpt-9"), None, None),
            Ok(())
        );
    }

    #[test]
    fn a_failed_catalog_lets_requests_through_and_is_not_asked_again_at_once() {
        let m = models();
        let broken = Child::new(1, true);
        assert_eq!(
            m.check_request(Some(&broken), Some("gpt-9"), None, None),
            Ok(())
        );
        assert_eq!(
            m.check_request(Some(&broken), Some("gpt-9"), None, None),
            Ok(())
        );
        assert_eq!(broken.calls(), 1, "the failure is remembered");
        let e = m.list_json(&broken, false, false).unwrap_err();
        assert_eq!(e.status, 503, "the route still says why");
    }

    fn catalog() -> Catalog {
        let m = |id: &str, hidden: bool, efforts: &[&str]| {
            json!({"id": id, "model": id, "hidden": hidden, "isDefault": id == "gpt-5.5",
                "supportedReasoningEfforts": efforts.iter().map(|e| json!({"reasoningEffort": e, "description": ""})).collect::<Vec<_>>()})
        };
        Catalog {
            generation: 1,
            fetched: Instant::now(),
            fetched_at: now_rfc3339(),
            models: vec![
                m("gpt-5.5", false, &["low", "medium", "high", "xhigh"]),
                m("codex-auto-review", true, &["low", "medium"]),
            ],
        }
    }

    #[test]
    fn unknown_model_lists_every_usable_model() {
        let e = check(&catalog(), Some("gpt-9"), None, None).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "unknown_model"));
        assert_eq!(
            e.message,
            "Unknown model \"gpt-9\". Allowed: gpt-5.5, codex-auto-review. (GET /v1/codexd/models lists them with their efforts.)"
        );
        assert_eq!(
            e.details.unwrap()["allowed"],
            json!(["gpt-5.5", "codex-auto-review"])
        );
        assert_eq!(
            check(&catalog(), Some("codex-auto-review"), None, None),
            Ok(())
        );
    }

    #[test]
    fn effort_is_checked_against_the_requested_or_the_session_model() {
        let c = catalog();
        let e = check(&c, Some("gpt-5.5"), Some("ultra"), None).unwrap_err();
        assert_eq!(e.code, "unsupported_effort");
        assert_eq!(
            e.message,
            "Model \"gpt-5.5\" does not support effort \"ultra\". Allowed: low, medium, high, xhigh."
        );
        assert_eq!(check(&c, None, Some("high"), Some("gpt-5.5")), Ok(()));
        let e = check(&c, None, Some("high"), Some("codex-auto-review")).unwrap_err();
        assert_eq!(e.details.unwrap()["allowed"], json!(["low", "medium"]));
        // Nothing is known about a model outside the catalog, or about no model at all.
        assert_eq!(check(&c, None, Some("ultra"), Some("my-local-llm")), Ok(()));
        assert_eq!(check(&c, None, Some("ultra"), None), Ok(()));
    }
}
