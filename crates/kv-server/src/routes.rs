//! The one route table. Server routes start with `_`; everything else is a key.

use actix_web::{HttpResponse, Route, web};

use crate::error::ApiError;
use crate::handlers::{collection, keys, metrics, server, ui};

/// Answers 405 with `Allow` for a known path asked with another method.
fn allow_only(allow: &'static str) -> Route {
    web::route()
        .to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) })
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/_health/live", "/_health/live/"])
            .route(web::get().to(server::live))
            .route(web::head().to(server::live))
            .default_service(allow_only("GET, HEAD")),
    )
    .service(
        web::resource(["/_health", "/_health/", "/_health/ready", "/_health/ready/"])
            .route(web::get().to(server::ready))
            .route(web::head().to(server::ready))
            .default_service(allow_only("GET, HEAD")),
    )
    .service(
        web::resource(["/_metrics", "/_metrics/"])
            .route(web::get().to(metrics::metrics))
            .route(web::head().to(metrics::metrics))
            .default_service(allow_only("GET, HEAD")),
    )
    .service(
        web::resource(["/_stats", "/_stats/"])
            .route(web::get().to(collection::stats))
            .route(web::head().to(collection::stats))
            .default_service(allow_only("GET, HEAD")),
    )
    .service(
        web::resource(["/_keys", "/_keys/"])
            .route(web::get().to(collection::scan))
            .route(web::head().to(collection::scan))
            .route(web::delete().to(collection::delete_keys))
            .default_service(allow_only("GET, HEAD, DELETE")),
    )
    .service(
        web::resource(["/_tx", "/_tx/"])
            .route(web::post().to(collection::transaction))
            .default_service(allow_only("POST")),
    )
    .service(
        web::resource(["/_ui", "/_ui/"])
            .route(web::get().to(ui::index))
            .route(web::head().to(ui::index))
            .default_service(allow_only("GET, HEAD")),
    )
    .service(
        web::resource("/_ui/app.js")
            .route(web::get().to(ui::script))
            .route(web::head().to(ui::script))
            .default_service(allow_only("GET, HEAD")),
    )
    .service(
        web::resource("/_ui/app.css")
            .route(web::get().to(ui::stylesheet))
            .route(web::head().to(ui::stylesheet))
            .default_service(allow_only("GET, HEAD")),
    )
    .service(
        web::resource(["/{key}/incr", "/{key}/incr/"])
            .route(web::post().to(keys::incr))
            .default_service(allow_only("POST")),
    )
    .service(
        web::resource(["/{key}/decr", "/{key}/decr/"])
            .route(web::post().to(keys::decr))
            .default_service(allow_only("POST")),
    )
    .service(
        web::resource(["/{key}", "/{key}/"])
            .route(web::get().to(keys::get))
            .route(web::head().to(keys::head))
            .route(web::post().to(keys::set))
            .route(web::put().to(keys::set))
            .route(web::patch().to(keys::patch))
            .route(web::delete().to(keys::delete))
            .default_service(allow_only("GET, HEAD, POST, PUT, PATCH, DELETE")),
    )
    .default_service(web::to(server::route_not_found));
}
