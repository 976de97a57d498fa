//! Liveness and readiness probes. Readiness asks the `db::Health` service; this adapter holds
//! no database pool.

use hyper::StatusCode;
use serde_json::json;

use super::{ApiError, Ctx, Reply};

/// `GET /healthz`: the process answers.
pub async fn alive(_ctx: Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::ok(json!({ "status": "ok" })))
}

/// `GET /readyz`: the database answers within two seconds (`db::health::READY_WITHIN`).
pub async fn ready(ctx: Ctx) -> Result<Reply, ApiError> {
    match ctx.state.health.ready().await {
        Ok(()) => Ok(Reply::ok(json!({ "status": "ready" }))),
        Err(e) => Err(ApiError::base(
            StatusCode::SERVICE_UNAVAILABLE,
            &e.to_string(),
        )),
    }
}
