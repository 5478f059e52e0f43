//! The one route table. Server routes start with `_`; everything else is a key.
//!
//! Routing is on every request's path, so it is kept cheap (measured in docs/BENCHMARKS.md):
//! each server route path is a resource of its own, which actix matches by comparing strings
//! (a resource with several paths, or with a `{key}` parameter, is a regex tried on every
//! request), and the key routes are told apart here, by what follows the key's segment.

use actix_web::http::Method;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, Resource, Route, web};

use crate::error::ApiError;
use crate::handlers::{collection, keys, metrics, server, transfer, typed, ui};
use crate::http::key_of;
use crate::metrics::{Metrics, RouteLabel};
use crate::openapi;
use crate::state::AppState;
use crate::upstash;

/// Answers 405 with `Allow` for a known path asked with another method.
fn allow_only(allow: &'static str) -> Route {
    web::route()
        .to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) })
}

/// Registers a server route under each of `paths`, one resource per path, named by the
/// first (the route's label in `/_metrics`).
fn server_route(
    cfg: &mut web::ServiceConfig,
    paths: &[&'static str],
    allow: &'static str,
    methods: fn(Resource) -> Resource,
) {
    for path in paths {
        cfg.service(
            methods(web::resource(*path).name(paths[0])).default_service(allow_only(allow)),
        );
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    server_route(
        cfg,
        &["/_health/live", "/_health/live/"],
        "GET, HEAD",
        |r| {
            r.route(web::get().to(server::live))
                .route(web::head().to(server::live))
        },
    );
    server_route(
        cfg,
        &["/_health", "/_health/", "/_health/ready", "/_health/ready/"],
        "GET, HEAD",
        |r| {
            r.route(web::get().to(server::ready))
                .route(web::head().to(server::ready))
        },
    );
    server_route(cfg, &["/_metrics", "/_metrics/"], "GET, HEAD", |r| {
        r.route(web::get().to(metrics::metrics))
            .route(web::head().to(metrics::metrics))
    });
    server_route(cfg, &["/_stats", "/_stats/"], "GET, HEAD", |r| {
        r.route(web::get().to(collection::stats))
            .route(web::head().to(collection::stats))
    });
    server_route(cfg, &["/_keys", "/_keys/"], "GET, HEAD, DELETE", |r| {
        r.route(web::get().to(collection::scan))
            .route(web::head().to(collection::scan))
            .route(web::delete().to(collection::delete_keys))
    });
    server_route(cfg, &["/_tx", "/_tx/"], "POST", |r| {
        r.route(web::post().to(collection::transaction))
    });
    server_route(cfg, &["/_export", "/_export/"], "GET, HEAD", |r| {
        r.route(web::get().to(transfer::export))
            .route(web::head().to(transfer::export))
    });
    server_route(cfg, &["/_import", "/_import/"], "POST", |r| {
        r.route(web::post().to(transfer::import))
    });
    server_route(cfg, &["/_watch", "/_watch/"], "GET", |r| {
        r.route(web::get().to(crate::watch::watch))
    });
    server_route(cfg, &["/_eval", "/_eval/"], "POST", |r| {
        r.route(web::post().to(crate::handlers::eval::eval))
    });
    server_route(cfg, &["/_upstash", "/_upstash/"], "POST", |r| {
        r.route(web::post().to(upstash::single))
    });
    server_route(
        cfg,
        &["/_upstash/pipeline", "/_upstash/pipeline/"],
        "POST",
        |r| r.route(web::post().to(upstash::pipeline)),
    );
    server_route(
        cfg,
        &["/_upstash/multi-exec", "/_upstash/multi-exec/"],
        "POST",
        |r| r.route(web::post().to(upstash::multi_exec)),
    );
    server_route(cfg, &["/_ui", "/_ui/"], "GET, HEAD", |r| {
        r.route(web::get().to(ui::index))
            .route(web::head().to(ui::index))
    });
    server_route(cfg, &["/_ui/app.js"], "GET, HEAD", |r| {
        r.route(web::get().to(ui::script))
            .route(web::head().to(ui::script))
    });
    server_route(cfg, &["/_ui/app.css"], "GET, HEAD", |r| {
        r.route(web::get().to(ui::stylesheet))
            .route(web::head().to(ui::stylesheet))
    });
    server_route(cfg, &["/_openapi.json"], "GET, HEAD", |r| {
        r.route(web::get().to(openapi::document))
            .route(web::head().to(openapi::document))
    });
    cfg.default_service(web::to(key_route));
}

/// The routes under a key: `/<key>`, `/<key>/incr`, `/<key>/decr`, `/<key>/items` and
/// `/<key>/range` (each also with a trailing slash), and `/<key>/fields/<field>`,
/// `/<key>/members/<member>`, `/<key>/items/<index|head|tail>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyRoute {
    Key,
    Incr,
    Decr,
    Field,
    Member,
    Items,
    Item,
    Range,
}

impl KeyRoute {
    /// The key route `path` is, if any (`path` as actix routes it).
    fn of(path: &str) -> Option<KeyRoute> {
        let rest = path.strip_prefix('/')?;
        let (key, rest) = rest.split_once('/').unwrap_or((rest, ""));
        if key.is_empty() {
            return None;
        }
        let named = |prefix: &str| {
            rest.strip_prefix(prefix)
                .is_some_and(|name| !name.is_empty() && !name.contains('/'))
        };
        match rest {
            "" => Some(KeyRoute::Key),
            "incr" | "incr/" => Some(KeyRoute::Incr),
            "decr" | "decr/" => Some(KeyRoute::Decr),
            "items" | "items/" => Some(KeyRoute::Items),
            "range" | "range/" => Some(KeyRoute::Range),
            _ if named("fields/") => Some(KeyRoute::Field),
            _ if named("members/") => Some(KeyRoute::Member),
            _ if named("items/") => Some(KeyRoute::Item),
            _ => None,
        }
    }

    /// The route's label in `/_metrics` (its OpenAPI path).
    fn label(self) -> &'static str {
        match self {
            KeyRoute::Key => "/{key}",
            KeyRoute::Incr => "/{key}/incr",
            KeyRoute::Decr => "/{key}/decr",
            KeyRoute::Field => "/{key}/fields/{field}",
            KeyRoute::Member => "/{key}/members/{member}",
            KeyRoute::Items => "/{key}/items",
            KeyRoute::Item => "/{key}/items/{index}",
            KeyRoute::Range => "/{key}/range",
        }
    }

    fn allow(self) -> &'static str {
        match self {
            KeyRoute::Key => "GET, HEAD, POST, PUT, PATCH, DELETE",
            KeyRoute::Incr | KeyRoute::Decr | KeyRoute::Items => "POST",
            KeyRoute::Field | KeyRoute::Member | KeyRoute::Item => "GET, PUT, DELETE",
            KeyRoute::Range => "GET",
        }
    }
}

/// The key of a reading route: a reserved (`_`) key is a route that does not exist.
fn readable(req: &HttpRequest) -> Result<String, ApiError> {
    keys::readable_key(req, key_of(req)?)
}

/// Every request no server route took: a key route, or a 404.
async fn key_route(
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let Some(route) = KeyRoute::of(req.match_info().as_str()) else {
        return Err(ApiError::RouteNotFound(req.path().to_owned()).into());
    };
    req.extensions_mut().insert(RouteLabel(route.label()));
    let state = web::Data::<AppState>::extract(&req).await?;
    let metrics = web::Data::<Metrics>::extract(&req).await?;
    // Read only by the methods that take a body, after the key.
    let body = async { web::Bytes::from_request(&req, &mut payload.into_inner()).await };
    let response = match (route, req.method()) {
        (KeyRoute::Key, &Method::GET) => keys::get(&req, key_of(&req)?, &state, &metrics).await,
        (KeyRoute::Key, &Method::HEAD) => keys::head(&req, key_of(&req)?, &state, &metrics).await,
        (KeyRoute::Key, &Method::DELETE) => keys::delete(&req, key_of(&req)?, &state).await,
        (KeyRoute::Key, &Method::PATCH) => {
            keys::patch(&req, key_of(&req)?, body.await?, &state).await
        }
        (KeyRoute::Key, &Method::POST | &Method::PUT) => {
            keys::set(&req, key_of(&req)?, body.await?, &state).await
        }
        (KeyRoute::Incr, &Method::POST) => {
            keys::incr(&req, key_of(&req)?, body.await?, &state).await
        }
        (KeyRoute::Decr, &Method::POST) => {
            keys::decr(&req, key_of(&req)?, body.await?, &state).await
        }
        (KeyRoute::Field, &Method::GET) => typed::get_field(&req, readable(&req)?, &state).await,
        (KeyRoute::Field, &Method::PUT) => {
            typed::put_field(&req, key_of(&req)?, body.await?, &state).await
        }
        (KeyRoute::Field, &Method::DELETE) => {
            typed::delete_field(&req, key_of(&req)?, &state).await
        }
        (KeyRoute::Member, &Method::GET) => typed::get_member(&req, readable(&req)?, &state).await,
        (KeyRoute::Member, &Method::PUT) => {
            typed::put_member(&req, key_of(&req)?, body.await?, &state).await
        }
        (KeyRoute::Member, &Method::DELETE) => {
            typed::delete_member(&req, key_of(&req)?, &state).await
        }
        (KeyRoute::Items, &Method::POST) => {
            typed::push(&req, key_of(&req)?, body.await?, &state).await
        }
        (KeyRoute::Item, &Method::GET) => typed::get_item(&req, readable(&req)?, &state).await,
        (KeyRoute::Item, &Method::PUT) => {
            typed::set_item(&req, key_of(&req)?, body.await?, &state).await
        }
        (KeyRoute::Item, &Method::DELETE) => typed::pop(&req, key_of(&req)?, &state).await,
        (KeyRoute::Range, &Method::GET) => typed::range(&req, readable(&req)?, &state).await,
        _ => Err(ApiError::MethodNotAllowed(route.allow())),
    };
    Ok(response?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_routes_are_told_apart_by_what_follows_the_key() {
        assert_eq!(KeyRoute::of("/a"), Some(KeyRoute::Key));
        assert_eq!(KeyRoute::of("/a/"), Some(KeyRoute::Key));
        assert_eq!(KeyRoute::of("/a/incr"), Some(KeyRoute::Incr));
        assert_eq!(KeyRoute::of("/a/incr/"), Some(KeyRoute::Incr));
        assert_eq!(KeyRoute::of("/a%2Fb/decr"), Some(KeyRoute::Decr));
        assert_eq!(KeyRoute::of("/incr"), Some(KeyRoute::Key));
        for not_a_route in [
            "/",
            "",
            "//a",
            "/a//",
            "/a/b",
            "/a/incr//",
            "/a/incr/x",
            "/a/INCR",
        ] {
            assert_eq!(KeyRoute::of(not_a_route), None, "{not_a_route}");
        }
    }
}
