//! Requests to routes: authentication, the method check, the request log line.

use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::body::{bearer, error_response, json_response, Reply};
use crate::connectors::{delete_connector, put_file, upload};
use crate::instances::{create_instance, instance, update_instance};
use crate::invoke::invoke;
use crate::model::{ConnectorMeta, Instance, Tenant};
use crate::tenants::admin;
use crate::{consumers, files, openapi, ApiError};
use crate::{new_id, ResponseBody, State};

/// What a request's log line says beyond its method, path and status: who
/// made it and which instance it touched, learnt while routing it.
#[derive(Debug, Default, Clone)]
pub(crate) struct RequestLog {
    pub(crate) request_id: String,
    pub(crate) tenant: Option<String>,
    pub(crate) instance: Option<String>,
}

tokio::task_local! {
    pub(crate) static REQUEST_LOG: std::cell::RefCell<RequestLog>;
}

/// Note a fact about the current request for its log line (a no-op outside one).
pub(crate) fn note_request(update: impl FnOnce(&mut RequestLog)) {
    let _ = REQUEST_LOG.try_with(|log| update(&mut log.borrow_mut()));
}

pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<ResponseBody> {
    use std::sync::atomic::Ordering;
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(new_id, str::to_string);
    let started = std::time::Instant::now();
    let log = std::cell::RefCell::new(RequestLog {
        request_id: request_id.clone(),
        ..RequestLog::default()
    });
    let (result, log) = REQUEST_LOG
        .scope(log, async {
            let result = route(&state, req).await;
            (result, REQUEST_LOG.with(|log| log.borrow().clone()))
        })
        .await;
    let (mut response, code) = match result {
        Ok(response) => (response, None),
        Err(err) => (error_response(&err), Some(err.code)),
    };
    let status = response.status().as_u16();
    // Paths carry ids, never secrets; bodies and headers are not logged. A
    // stream logs its own end, with its whole duration.
    tracing::info!(
        request_id,
        %method,
        path,
        status,
        tenant = log.tenant.as_deref(),
        instance = log.instance.as_deref(),
        error = code,
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    response
}

/// Path segments after the leading slash.
pub(crate) fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

pub(crate) async fn route(state: &Arc<State>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let parts = segments(&path);
    let method = req.method().clone();
    let allowed = openapi::allowed_methods(&parts);
    if !allowed.is_empty() && !allowed.contains(&method.as_str()) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{path} answers {}, not {method}", allowed.join(", ")),
        )
        .details(json!({ "allow": allowed })));
    }
    // HEAD is GET without the body (hyper leaves the body out).
    let read = method == Method::GET || method == Method::HEAD;
    match (read, parts.as_slice()) {
        (true, ["healthz"]) => {
            return Ok(json_response(StatusCode::OK, &json!({ "status": "ok" })))
        }
        (true, ["metrics"]) => {
            // Tenant and instance ids, digests and origins: for operators only.
            let token = bearer(&req);
            if !state.is_admin(token.as_deref()) && !state.is_metrics_reader(token.as_deref()) {
                return Err(ApiError::unauthorized());
            }
            let upstream: Vec<_> = state
                .grants
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .flat_map(|(key, (_, grants))| {
                    let (tenant, instance) = key.split_once('/').unwrap_or((key, ""));
                    grants
                        .http
                        .counters()
                        .into_iter()
                        .map(|(origin, c)| (tenant.to_string(), instance.to_string(), origin, c))
                        .collect::<Vec<_>>()
                })
                .collect();
            let text = state
                .metrics
                .render(state.artifacts.stats(), state.warm.len(), &upstream);
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header(
                    http::header::CONTENT_TYPE,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                )
                .body(Full::new(Bytes::from(text)).boxed())
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())));
        }
        (true, ["openapi.json"]) => {
            return Ok(json_response(StatusCode::OK, &openapi::document()));
        }
        (true, ["readyz"]) => {
            state.store.check().await?;
            return Ok(json_response(StatusCode::OK, &json!({ "status": "ready" })));
        }
        _ => {}
    }
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method
    };
    let token = bearer(&req);
    if let ["v1", "tenants", rest @ ..] = parts.as_slice() {
        if !state.is_admin(token.as_deref()) {
            return Err(ApiError::unauthorized());
        }
        let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        return admin(state, method, &rest, req).await;
    }
    let tenant = state.tenant_of(token.as_deref()).await?;
    note_request(|log| log.tenant = Some(tenant.id.clone()));
    let parts: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
    match (
        method,
        parts
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (Method::POST, ["v1", "connectors"]) => upload(state, &tenant, req).await,
        (Method::GET, ["v1", "connectors"]) => {
            let mut builtins: Vec<&ConnectorMeta> =
                state.builtins.values().map(|(m, _)| m).collect();
            builtins.sort_by(|a, b| a.name.cmp(&b.name));
            let reply = list(state, "connectors", &tenant, |v: ConnectorMeta| json!(v)).await?;
            if builtins.is_empty() {
                return Ok(reply);
            }
            let own = read_json_response(reply).await?;
            let mut items: Vec<Value> = builtins.into_iter().map(|m| json!(m)).collect();
            // An upload of a bundled connector's bytes (stored before uploads of
            // them were answered with the bundled one) is listed once.
            let own_items = own["items"].as_array().cloned().unwrap_or_default();
            items.extend(own_items.into_iter().filter(|item| {
                item["id"]
                    .as_str()
                    .is_none_or(|id| !state.builtins.contains_key(id))
            }));
            Ok(json_response(StatusCode::OK, &json!({ "items": items })))
        }
        (Method::GET, ["v1", "connectors", id]) => {
            let meta = state
                .connector_meta(&tenant.id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("connector", id))?;
            Ok(json_response(StatusCode::OK, &json!(meta)))
        }
        (Method::DELETE, ["v1", "connectors", id]) => delete_connector(state, &tenant, id).await,
        (Method::POST, ["v1", "instances"]) => create_instance(state, &tenant, req).await,
        (Method::GET, ["v1", "instances"]) => {
            list(state, "instances", &tenant, |v: Instance| json!(v.view())).await
        }
        (Method::GET, ["v1", "instances", id]) => Ok(json_response(
            StatusCode::OK,
            &json!(instance(state, &tenant, id).await?.view()),
        )),
        (Method::PUT, ["v1", "instances", id]) => update_instance(state, &tenant, id, req).await,
        (Method::DELETE, ["v1", "instances", id]) => {
            if !state
                .store
                .delete("instances", &format!("{}/{id}", tenant.id))
                .await?
            {
                return Err(ApiError::not_found("instance", id));
            }
            state.forget_instance(&tenant.id, id);
            Ok(json_response(StatusCode::OK, &json!({ "deleted": id })))
        }
        (Method::POST, ["v1", "instances", id, "consumers"]) => {
            consumers::create(state, &tenant, id, req).await
        }
        (Method::POST, ["v1", "instances", id, "consumers", lease, action]) => {
            consumers::command(state, &tenant, id, lease, action, req).await
        }
        (Method::DELETE, ["v1", "instances", id, "consumers", lease]) => {
            consumers::close(state, &tenant, id, lease).await
        }
        (Method::POST, ["v1", "instances", id, operation]) => {
            invoke(state, &tenant, id, operation, req).await
        }
        (Method::GET, ["v1", "files"]) => {
            files::check_enabled(&tenant)?;
            let items = files::list(&state.tenant_files(&tenant.id)?)?;
            Ok(json_response(StatusCode::OK, &json!({ "items": items })))
        }
        (Method::PUT, ["v1", "files", path @ ..]) => put_file(state, &tenant, path, req).await,
        (Method::GET, ["v1", "files", path @ ..]) => {
            files::check_enabled(&tenant)?;
            let path = files::relative_path(path)?;
            let bytes = files::read(
                &state.tenant_files(&tenant.id)?,
                &path,
                state.max_upload_bytes,
            )?;
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
                .body(Full::new(Bytes::from(bytes)).boxed())
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())))
        }
        (Method::DELETE, ["v1", "files", path @ ..]) => {
            files::check_enabled(&tenant)?;
            let path = files::relative_path(path)?;
            files::remove(&state.tenant_files(&tenant.id)?, &path)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "deleted": path.to_string_lossy() }),
            ))
        }
        (method, _) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no route for {method} {path}"),
        )),
    }
}

/// The JSON body of a response built by this server.
pub(crate) async fn read_json_response(
    response: Response<ResponseBody>,
) -> Result<Value, ApiError> {
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

pub(crate) async fn list<T: DeserializeOwned>(
    state: &State,
    kind: &str,
    tenant: &Tenant,
    view: impl Fn(T) -> Value,
) -> Reply {
    let mut items = Vec::new();
    for key in state.store.list(kind, &format!("{}/", tenant.id)).await? {
        if let Some(item) = state.load::<T>(kind, &key).await? {
            items.push(view(item));
        }
    }
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}
