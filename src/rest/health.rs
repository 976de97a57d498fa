//! Liveness and readiness probes.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;

use super::{ApiError, Ctx, Reply};

/// `GET /healthz`: the process answers.
pub async fn alive(_ctx: Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::ok(json!({ "status": "ok" })))
}

/// `GET /readyz`: the database answers within two seconds.
pub async fn ready(ctx: Ctx) -> Result<Reply, ApiError> {
    let pool = ctx.state.pool.clone();
    let check = async move {
        let c = pool.get().await.map_err(|e| e.to_string())?;
        c.query_one("SELECT 1", &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(())) => Ok(Reply::ok(json!({ "status": "ready" }))),
        Ok(Err(e)) => Err(ApiError::base(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("database unavailable: {e}"),
        )),
        Err(_) => Err(ApiError::base(
            StatusCode::SERVICE_UNAVAILABLE,
            "database did not answer within 2 s",
        )),
    }
}
