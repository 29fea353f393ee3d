//! `ApiJson<T>`: a JSON body extractor whose every refusal is an [`ApiError`] naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A request body parsed as JSON into `T`. Too large: 413; not JSON: 400; JSON of the wrong
/// shape (a wrong type, an unknown or missing field): 422 with the field's path.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
                    _ => ApiError::Malformed {
                        message: rejection.body_text(),
                    },
                })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Like [`ApiJson`], but an empty body reads as `T::default()`: for actions whose body is
/// optional (`POST /v1/tasks/{id}/cancel` with or without a reason).
#[derive(Debug)]
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
                    _ => ApiError::Malformed {
                        message: rejection.body_text(),
                    },
                })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        parse(&bytes).map(ApiJsonOrEmpty)
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        refusal(inner, (path != ".").then_some(path))
    })?;
    deserializer.end().map_err(|error| refusal(error, None))?;
    Ok(value)
}

/// `value` read as `T`, refused like a body: 422 with the field's path.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        refusal(error.into_inner(), (path != ".").then_some(path))
    })
}

fn refusal(error: serde_json::Error, field: Option<String>) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => ApiError::Invalid {
            message: match &field {
                Some(field) => format!("{field}: {error}"),
                None => error.to_string(),
            },
            field,
        },
        Category::Syntax | Category::Eof | Category::Io => ApiError::Malformed {
            message: format!("the body is not valid JSON: {error}"),
        },
    }
}
