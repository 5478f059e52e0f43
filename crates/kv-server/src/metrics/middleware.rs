//! Counts and times every request by method, route template and status.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, web};

use super::registry::Metrics;

/// The route label of requests that matched no route (answered 404 by the default service).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// `wrap(from_fn(track))`: records the request once its response head is ready.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(metrics) = req.app_data::<web::Data<Metrics>>().cloned() else {
        return next.call(req).await;
    };
    let started = Instant::now();
    let method = method_label(req.method());
    let result = next.call(req).await;
    // The route is read after routing: actix then knows the matched resource and need not
    // match the path again. (An `Err` here comes from no route: handler errors are responses.)
    let (route, status) = match &result {
        Ok(res) => (route_label(res.request()), res.status()),
        Err(err) => (UNMATCHED_ROUTE, err.as_response_error().status_code()),
    };
    metrics
        .http_requests
        .with_label_values(&[method, route, status.as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[method, route])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The route a key route's request took (`/{key}`, `/{key}/incr`, `/{key}/decr`), set by
/// the router as a request extension: those routes are not actix resources.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// The route template that matched (`/{key}`, `/{key}/incr`, `/_keys`, …): never the raw
/// path, so a key never becomes a label value. A server route with several paths
/// (`/_health`, `/_health/ready`, with and without the trailing slash) is named by its first.
fn route_label(req: &HttpRequest) -> &str {
    if let Some(RouteLabel(label)) = req.extensions().get::<RouteLabel>() {
        return label;
    }
    req.match_name().unwrap_or(UNMATCHED_ROUTE)
}

/// The method, or `other` for a non-standard one (a client must not create label values).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
