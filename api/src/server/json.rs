use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A JSON request body, like `axum::Json`, but any body that does not parse
/// is a 400 problem (axum answers 422 for wrong types) whose detail says
/// where; a missing content type stays 415.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

/// The refusal of a body that is not the expected JSON.
#[derive(Debug)]
pub struct JsonBodyRejection(JsonRejection);

impl IntoResponse for JsonBodyRejection {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(r) => r.status(),
            _ => StatusCode::BAD_REQUEST,
        };
        Problem::new(status, self.0.body_text())
            .with_title("Invalid request body")
            .into_response()
    }
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = JsonBodyRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| JsonBody(value))
            .map_err(JsonBodyRejection)
    }
}
