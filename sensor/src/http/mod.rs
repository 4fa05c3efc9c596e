//! The daemon's HTTP listener (`daemon.metrics_listen`): Prometheus
//! `/metrics`, and the JSON API under `/api/v1/` that asks the daemon what
//! the control socket asks it (same requests, same answers), so that tools
//! without root on the collector can read the RIB and the mitigations and,
//! with the token, ban and unban.
//!
//! - `GET /api/v1/status | attacks | mitigations | bgp`
//! - `GET /api/v1/rib?peer=&family=&prefix=&match=longest|exact|more-specific&community=&flowspec_only=true&limit=`
//! - `POST /api/v1/routes` `{"ip": "192.0.2.7", "flowspec": "proto udp src-port 123", "duration_secs": 1800}`
//!   or `{"ip": "192.0.2.7", "blackhole": true}`: a manual mitigation, through
//!   the same safety checks as `edge-sensor ban`;
//! - `DELETE /api/v1/routes/{id or address}`: `edge-sensor unban`.
//!
//! Writes need `Authorization: Bearer TOKEN`, the token read from
//! `daemon.api_token_file` (a file only its owner, root, may read); without
//! that file they are refused.

mod token;
mod view;

use std::{io, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::Deserialize;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};

pub use token::{Token, TokenError};

use crate::{
    bgp::RibQuery,
    control::{self, Pending, Request},
    metrics::Metrics,
};

/// Content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Largest request body taken (a ban is a few hundred bytes).
const MAX_BODY: usize = 16 * 1024;
/// The daemon answers within a poll; past this the request fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// What the API needs: the daemon's request queue, and the token for
/// writes (`None`: writes refused).
#[derive(Clone)]
pub struct Api {
    pub requests: mpsc::Sender<Pending>,
    pub token: Option<Arc<Token>>,
}

/// `/` and `/metrics`.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Metrics>| async move {
                ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.render())
            }),
        )
        .with_state(metrics)
}

/// `/api/v1/...` (see the module doc).
pub fn api_router(api: Api) -> Router {
    Router::new()
        .route(
            "/api/v1/status",
            get(|s: State<Api>| ask(s, Request::Status)),
        )
        .route(
            "/api/v1/attacks",
            get(|s: State<Api>| ask(s, Request::Attacks)),
        )
        .route(
            "/api/v1/mitigations",
            get(|s: State<Api>| ask(s, Request::Mitigations)),
        )
        .route("/api/v1/bgp", get(|s: State<Api>| ask(s, Request::Bgp)))
        .route("/api/v1/view", get(|s: State<Api>| ask(s, Request::View)))
        .route("/", get(view::page))
        .route(
            "/api/v1/rib",
            get(|s: State<Api>, Query(query): Query<RibQuery>| ask(s, Request::Rib { query })),
        )
        .route("/api/v1/routes", post(ban))
        .route("/api/v1/routes/{target}", delete(unban))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router) -> io::Result<()> {
    axum::serve(listener, router).await
}

/// A request body for `POST /api/v1/routes`: the `ban` command's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ban {
    ip: String,
    #[serde(default)]
    flowspec: Option<String>,
    #[serde(default)]
    blackhole: bool,
    #[serde(default)]
    duration_secs: Option<u64>,
}

async fn ban(State(api): State<Api>, headers: HeaderMap, Json(b): Json<Ban>) -> Response {
    if let Some(refused) = refusal(&api, &headers) {
        return refused;
    }
    ask(
        State(api),
        Request::Ban {
            ip: b.ip,
            flowspec: b.flowspec,
            blackhole: b.blackhole,
            duration_secs: b.duration_secs,
        },
    )
    .await
}

async fn unban(State(api): State<Api>, headers: HeaderMap, Path(target): Path<String>) -> Response {
    if let Some(refused) = refusal(&api, &headers) {
        return refused;
    }
    ask(State(api), Request::Unban { target }).await
}

/// Writes need the configured token as a bearer token: the answer to a
/// write without it, `None` with it.
fn refusal(api: &Api, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &api.token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "writes through the API need daemon.api_token_file (or use the control socket)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if token.matches(g) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

/// Hands `request` to the daemon's loop and answers with its JSON.
async fn ask(State(api): State<Api>, request: Request) -> Response {
    let (tx, rx) = oneshot::channel();
    if api.requests.send((request, tx)).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        );
    }
    match tokio::time::timeout(ANSWER_WITHIN, rx).await {
        Ok(Ok(control::Response::Ok { body })) => Json(body).into_response(),
        Ok(Ok(control::Response::Error { message })) => error(StatusCode::BAD_REQUEST, &message),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "the daemon did not answer in time",
        ),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests;
