//! `GET /openapi.json`: the OpenAPI 3.1 description of this API. It is the committed
//! `docs/openapi.json`, compiled into the binary so what a running server describes is what it
//! was built from; `tests/rest_openapi.rs` checks it against the route table both ways.

use hyper::StatusCode;

use super::{ApiError, Ctx, Reply};

/// The document as committed (built in: no file is read, nothing is generated per request).
const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// `GET /openapi.json`: no token needed, as API descriptions are read by tools before any
/// session exists.
pub async fn document(_ctx: Ctx) -> Result<Reply, ApiError> {
    Ok(Reply {
        status: StatusCode::OK,
        body: DOCUMENT.as_bytes().to_vec(),
        location: None,
    })
}
