//! The HTTP shell: parses a request's path, query and body, calls the [`Store`], and answers with
//! the object, a list, a watch stream or a `metav1.Status`. Nothing here decides anything.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::requests::{verb, Request as LoggedRequest};
use super::selector::Selector;
use super::store::{
    ApiError, Change, Deleted, ObjectKey, PatchKind, Preconditions, ResourceKey, Store, Subresource,
};
use super::Shared;

pub type Body = BoxBody<Bytes, Infallible>;

/// What the URL names: a resource, maybe a namespace, maybe one object and a subresource.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    resource: ResourceKey,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Target {
    /// `/api/v1/[namespaces/{ns}/]{plural}[/{name}[/status]]` and the same under `/apis/{group}/{version}`.
    fn parse(path: &str) -> Option<Target> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
            _ => (None, rest),
        };
        let (plural, name, status) = match rest {
            [plural] => (*plural, None, false),
            [plural, name] => (*plural, Some((*name).to_owned()), false),
            [plural, name, "status"] => (*plural, Some((*name).to_owned()), true),
            _ => return None,
        };
        Some(Target {
            resource: ResourceKey {
                group: group.into(),
                version: version.into(),
                plural: plural.into(),
            },
            namespace,
            name,
            status,
        })
    }

    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey {
            resource: self.resource.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.to_owned(),
        }
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let query: HashMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let Some(target) = Target::parse(&path) else {
        shared.requests.record(LoggedRequest::non_resource(
            &verb(&method, true, false),
            &path,
        ));
        return Ok(non_resource(&shared, &method, &path));
    };
    shared.requests.record(LoggedRequest {
        verb: verb(&method, target.name.is_some(), watching),
        group: target.resource.group.clone(),
        version: target.resource.version.clone(),
        resource: target.resource.plural.clone(),
        subresource: target.status.then(|| "status".to_owned()),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    });
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(
                &ApiError::bad_request(format!("reading the body: {e}")),
                None,
            ))
        }
    };
    if method == Method::GET && target.name.is_none() && watching {
        return Ok(watch(&shared, &target, &query).unwrap_or_else(|e| error_response(&e, None)));
    }
    let call = Call {
        target: &target,
        query: &query,
        content_type: content_type.as_deref(),
        body: &body,
    };
    let key = target.name.as_deref().map(|n| target.key(n));
    Ok(match call.run(&shared, &method, key.as_ref()) {
        Ok(value) => json_response(
            if method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &value,
        ),
        Err(e) => error_response(&e, key.as_ref()),
    })
}

/// `/version`, discovery, or a path the fake does not serve.
fn non_resource(shared: &Shared, method: &Method, path: &str) -> Response<Body> {
    let answer = if path == "/version" {
        Some(Ok(
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-pgroute-fake", "platform": "linux/amd64"}),
        ))
    } else {
        shared.discovery.answer(path)
    };
    match answer {
        Some(Ok(value)) if method == Method::GET => json_response(StatusCode::OK, &value),
        Some(Ok(_)) => error_response(
            &ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported on {path}"),
            ),
            None,
        ),
        Some(Err(e)) => error_response(&e, None),
        None => error_response(
            &ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            ),
            None,
        ),
    }
}

/// A request for a resource, body read, ready to be answered with a single JSON value.
struct Call<'a> {
    target: &'a Target,
    query: &'a HashMap<String, String>,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

impl Call<'_> {
    fn run(
        &self,
        shared: &Shared,
        method: &Method,
        key: Option<&ObjectKey>,
    ) -> Result<Value, ApiError> {
        let store = &shared.store;
        let target = self.target;
        let sub = if target.status {
            Subresource::Status
        } else {
            Subresource::Main
        };
        match (method, key) {
            (&Method::GET, None) => list(shared, target, self.query),
            (&Method::GET, Some(key)) => store.get(key),
            (&Method::POST, None) => parse_json(self.body).and_then(|object| {
                store.create(
                    &target.resource,
                    target.namespace.as_deref().unwrap_or(""),
                    object,
                )
            }),
            (&Method::PUT, Some(key)) => {
                parse_json(self.body).and_then(|object| store.replace(key, object, sub))
            }
            (&Method::PATCH, Some(key)) => patch_kind(self.content_type, self.query)
                .and_then(|kind| store.patch(key, kind, self.body, sub)),
            (&Method::DELETE, Some(key)) => delete(store, key, self.body),
            (&Method::DELETE, None) if !target.status => {
                delete_collection(shared, target, self.query)
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported here"),
            )),
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

fn patch_kind(
    content_type: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<PatchKind, ApiError> {
    match content_type {
        Some("application/merge-patch+json") => Ok(PatchKind::Merge),
        Some("application/json-patch+json") => Ok(PatchKind::Json),
        Some("application/apply-patch+yaml") if query.get("fieldManager").is_some_and(|m| !m.is_empty()) => {
            Ok(PatchKind::Apply)
        }
        Some("application/apply-patch+yaml") => Err(ApiError::bad_request("fieldManager is required for apply patch")),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"),
        )),
    }
}

fn list(
    shared: &Shared,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let store = &shared.store;
    let selector = selector(query)?;
    let limit = query
        .get("limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l}")))
        })
        .transpose()?;
    let page = store.list(
        &target.resource,
        target.namespace.as_deref(),
        &selector,
        limit,
        query
            .get("continue")
            .map(String::as_str)
            .filter(|c| !c.is_empty()),
    )?;
    let (api_version, kind) = type_of(shared, &target.resource);
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = token.into();
        metadata["remainingItemCount"] = page.remaining.into();
    }
    Ok(
        json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": metadata, "items": page.items}),
    )
}

fn selector(query: &HashMap<String, String>) -> Result<Selector, ApiError> {
    Selector::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )
}

/// `(apiVersion, kind)` of a resource: as its objects say, else as discovery says, else from the
/// URL (with an empty kind).
fn type_of(shared: &Shared, resource: &ResourceKey) -> (String, String) {
    let learned = shared.store.kind_of(resource);
    learned
        .or_else(|| shared.discovery.kind_of(resource))
        .unwrap_or_else(|| {
            let api_version = if resource.group.is_empty() {
                resource.version.clone()
            } else {
                format!("{}/{}", resource.group, resource.version)
            };
            (api_version, String::new())
        })
}

fn delete(store: &Store, key: &ObjectKey, body: &[u8]) -> Result<Value, ApiError> {
    let options: Value = if body.is_empty() {
        Value::Null
    } else {
        parse_json(body)?
    };
    let field = |p: &str| {
        options
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let pre = Preconditions {
        uid: field("/preconditions/uid"),
        resource_version: field("/preconditions/resourceVersion"),
    };
    Ok(match store.delete(key, &pre)? {
        Deleted::Pending(object) => object,
        Deleted::Gone(object) => json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": key.name, "group": key.resource.group, "kind": key.resource.plural,
                        "uid": object.pointer("/metadata/uid")},
        }),
    })
}

/// DELETE on a collection: answered, as the real server does, with the list of what it deleted.
fn delete_collection(
    shared: &Shared,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let items = shared.store.delete_collection(
        &target.resource,
        target.namespace.as_deref(),
        &selector(query)?,
    )?;
    let (api_version, kind) = type_of(shared, &target.resource);
    Ok(json!({
        "apiVersion": api_version, "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": shared.store.resource_version().to_string()}, "items": items,
    }))
}

/// `?watch=true`: newline-delimited JSON events, first the replay (changes after `resourceVersion`,
/// or ADDED for every object when it is unset or `0`), then live changes; a BOOKMARK after the
/// replay and every [`super::Options::bookmark_interval`] when `allowWatchBookmarks=true`. Ends after
/// `timeoutSeconds`, or with an ERROR 410 Expired if the watcher falls too far behind.
fn watch(
    shared: &Shared,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let store = &shared.store;
    let selector = selector(query)?;
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv}")))?,
        ),
    };
    let start = store.watch(&target.resource, from)?;
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (api_version, kind) = type_of(shared, &target.resource);
    let namespace = target.namespace.clone();
    let resource = target.resource.clone();
    let wanted = move |c: &Change| {
        namespace.as_ref().is_none_or(|ns| &c.key.namespace == ns) && selector.matches(&c.object)
    };
    let bookmark = move |rv: u64| json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv.to_string()}}});
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let interval = shared.opts.bookmark_interval;
    tokio::spawn(async move {
        let send = |event: Value| {
            let tx = tx.clone();
            async move {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                tx.send(Bytes::from(line)).await.is_ok()
            }
        };
        let mut last_rv = start.resource_version;
        for change in start.replay.iter().filter(|c| wanted(c)) {
            if !send(event_json(change)).await {
                return;
            }
        }
        if bookmarks && !send(bookmark(last_rv)).await {
            return;
        }
        let mut live = start.live;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let event = tokio::select! {
                _ = &mut deadline => return,
                _ = ticks.tick(), if bookmarks => bookmark(last_rv),
                change = live.recv() => match change {
                    Ok(change) => {
                        last_rv = last_rv.max(change.rv);
                        if change.rv <= start.resource_version || change.key.resource != resource || !wanted(&change) {
                            continue;
                        }
                        event_json(&change)
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let expired = ApiError::new(410, "Expired", "the watch fell behind; start again from a list");
                        let _ = send(json!({"type": "ERROR", "object": expired.to_status(None)})).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if !send(event).await {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    let mut response = Response::new(BoxBody::new(StreamBody::new(stream)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn event_json(change: &Change) -> Value {
    json!({"type": change.event.as_str(), "object": change.object})
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(BoxBody::new(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(err: &ApiError, key: Option<&ObjectKey>) -> Response<Body> {
    json_response(
        StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &err.to_status(key),
    )
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn parses_core_and_group_paths() {
        let t = Target::parse("/api/v1/namespaces/ns/pods/p/status").expect("path");
        assert_eq!(
            (t.resource.group.as_str(), t.resource.plural.as_str()),
            ("", "pods")
        );
        assert_eq!(
            (t.namespace.as_deref(), t.name.as_deref(), t.status),
            (Some("ns"), Some("p"), true)
        );
        let t = Target::parse("/apis/pgroute.dev/v1alpha1/databaseproxies").expect("path");
        assert_eq!((t.namespace, t.name), (None, None));
        let t = Target::parse("/api/v1/namespaces/ns").expect("path");
        assert_eq!(
            (t.resource.plural.as_str(), t.name.as_deref()),
            ("namespaces", Some("ns"))
        );
        assert!(Target::parse("/healthz").is_none());
    }
}
