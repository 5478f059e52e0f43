//! Errors raised by actix itself (body too large, malformed query or path) get the same JSON
//! shape as ours: every error response is `{"error", "code"}`.

use actix_web::body::EitherBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};

use crate::error::ErrorBody;

pub fn middleware<B: 'static>(max_body_bytes: usize) -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(move |res: ServiceResponse<B>| {
        let is_json = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let detail = res.response().error().map(|e| e.to_string());
        let (code, message) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                format!("payload too large (the limit is {max_body_bytes} bytes)"),
            ),
            StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method_not_allowed", "method not allowed".to_owned())
            }
            s if s.is_server_error() => ("internal_error", "internal server error".to_owned()),
            _ => ("bad_request", detail.unwrap_or_else(|| status.to_string())),
        };
        let body = serde_json::to_string(&ErrorBody::new(message, code)).unwrap_or_default();
        let (req, mut res) = res.into_parts();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let res: ServiceResponse<EitherBody<B>> = ServiceResponse::new(req, res.set_body(body))
            .map_into_boxed_body()
            .map_into_right_body();
        Ok(ErrorHandlerResponse::Response(res))
    })
}
