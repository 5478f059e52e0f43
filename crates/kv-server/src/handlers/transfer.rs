//! `GET /_export` and `POST /_import`: NDJSON out and in (kv-core's `transfer`).

use std::io::{BufReader, Write};

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use kv_core::args::ImportMode;
use kv_core::transfer::{self, ExportFilter};
use kv_core::view::ImportView;
use kv_core::{StoreError, now_ms};
use serde::Deserialize;

use crate::auth::Reach;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Fingerprint};
use crate::state::AppState;
use kv_core::idempotency::StoredResponse;

/// NDJSON, as `GET /_export` answers and `POST /_import` reads.
pub const NDJSON: &str = "application/x-ndjson";

/// Chunks (of up to 1000 lines) an export reads ahead of a slow client.
const EXPORT_READ_AHEAD: usize = 4;

/// An upload is written to its temp file in pieces of about this many bytes.
const SPOOL_PIECE: usize = 1 << 20;

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    prefix: Option<String>,
    #[serde(rename = "match")]
    pattern: Option<String>,
}

/// `GET /_export`: every live key (under `prefix`, matching `match`) as NDJSON, in byte
/// order, from one snapshot of the store, streamed as it is read.
#[utoipa::path(get, path = "/_export", tag = "transfer", operation_id = "export",
    params(
        ("prefix" = Option<String>, Query, description = "Only keys starting with this"),
        ("match" = Option<String>, Query, description = "Only keys matching this Redis glob, at most 1024 bytes"),
    ),
    responses(
        (status = 200, description = "One `{\"key\",\"value\",\"expires_at\",\"version\"}` a line", content_type = "application/x-ndjson", body = String),
    ))]
pub async fn export(
    query: web::Query<ExportQuery>,
    reach: Reach,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let mut filter = ExportFilter::parse(q.prefix.as_deref(), q.pattern.as_deref())?;
    // A scoped key: a prefix within its scope, or, without one, all of its keys.
    if let Some(prefixes) = reach.listing(q.prefix.as_deref())? {
        filter.prefixes = prefixes;
    }
    let (chunks, mut received) =
        tokio::sync::mpsc::channel::<Result<web::Bytes, ApiError>>(EXPORT_READ_AHEAD);
    let pool = state.store.pool().clone();
    let now = now_ms();
    // Not awaited: the blocking thread reads on while the response streams what it sent.
    drop(web::block(move || {
        let result = pool.read_once(|conn| {
            transfer::export(conn, now, &filter, &mut |chunk| {
                chunks.blocking_send(Ok(chunk.into())).is_ok()
            })
        });
        if let Err(err) = result {
            log::error!("export failed: {err}");
            let _ = chunks.blocking_send(Err(err.into()));
        }
    }));
    // The first chunk decides the status: a database that cannot be read is a 503, not a 200
    // with an empty body.
    let first = match received.recv().await {
        Some(Err(err)) => return Err(err),
        Some(Ok(chunk)) => Some(chunk),
        None => None,
    };
    let rest = futures_util::stream::unfold(received, |mut received| async move {
        // An error after the first chunk aborts the response: the client sees a transfer
        // that ends without its last chunk, never a short export that looks complete.
        received.recv().await.map(|chunk| (chunk, received))
    });
    let body = futures_util::stream::iter(first.map(Ok)).chain(rest);
    Ok(HttpResponse::Ok()
        .content_type(NDJSON)
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    mode: Option<String>,
}

/// `POST /_import`: NDJSON lines as `GET /_export` writes them, applied in one transaction
/// (all or nothing). The body is written to a temp file as it arrives, checked whole (every
/// line, every key within a scoped key's reach), then applied.
#[utoipa::path(post, path = "/_import", tag = "transfer", operation_id = "import",
    params(
        ("mode" = Option<String>, Query, description = "What to do with a key that is live already: `replace` (default), `skip_existing`, `fail_on_existing` (409, nothing imported)", pattern = "^(replace|skip_existing|fail_on_existing)$"),
    ),
    request_body(content = Option<String>, content_type = "text/plain", description = "NDJSON: one `{\"key\",\"value\",\"expires_at\"?,\"version\"?}` a line, as `GET /_export` writes them; read whatever the Content-Type (`application/x-ndjson` is apt). Empty: nothing to import"),
    responses(
        (status = 200, description = "Imported (or nothing to import)", body = ImportView),
        (status = 409, description = "mode=fail_on_existing and a key exists; nothing imported", body = ErrorBody),
    ))]
pub async fn import(
    req: HttpRequest,
    query: web::Query<ImportQuery>,
    reach: Reach,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mode: ImportMode = query.mode.as_deref().unwrap_or("replace").parse()?;
    let limit = state.max_import_bytes;
    let mut fingerprint = Fingerprint::of(&req);
    let mut file = tempfile::NamedTempFile::new().map_err(spool_failed)?;
    let (mut received, mut piece) = (0usize, Vec::with_capacity(SPOOL_PIECE));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        received += chunk.len();
        if received > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        fingerprint.update(&chunk);
        piece.extend_from_slice(&chunk);
        if piece.len() >= SPOOL_PIECE {
            (file, piece) = write_piece(file, piece).await?;
        }
    }
    (file, _) = write_piece(file, piece).await?;
    let max_line = state.max_body_bytes + 1024;
    // Checked before the writer is asked: a bad file never holds up other writes.
    let path = file.path().to_owned();
    web::block(move || check_lines(&path, max_line, &reach))
        .await
        .map_err(blocking_failed)??;
    let path = file.path().to_owned();
    let now = now_ms();
    let idempotent = idempotency::request_of(&req, || fingerprint, state.idempotency_retention_ms)?;
    let answer = state
        .write_answer(
            idempotent,
            now,
            move |tx| {
                let input = BufReader::new(std::fs::File::open(&path).map_err(|e| {
                    StoreError::Internal(format!("reopening the spooled import: {e}"))
                })?);
                let summary = transfer::import(tx, input, max_line, mode)?;
                Ok(ImportView::new(summary, tx.written_version()))
            },
            |view| StoredResponse::json(200, &view, None),
        )
        .await;
    drop(file);
    answer
}

/// Parses every line of the spooled import and checks that its key is within `reach`.
fn check_lines(path: &std::path::Path, max_line: usize, reach: &Reach) -> Result<(), ApiError> {
    let input = BufReader::new(std::fs::File::open(path).map_err(spool_failed)?);
    let mut out_of_reach = None;
    let checked = transfer::for_each_line(input, max_line, |number, line| {
        reach.check(&line.key).map_err(|err| {
            out_of_reach = Some(match err {
                ApiError::OutOfReach(why) => ApiError::OutOfReach(format!("line {number}: {why}")),
                other => other,
            });
            StoreError::Internal("stopped at a key out of reach".into())
        })
    });
    match out_of_reach {
        Some(err) => Err(err),
        None => checked.map(|_| ()).map_err(ApiError::from),
    }
}

fn spool_failed(e: std::io::Error) -> ApiError {
    StoreError::Unavailable(format!("cannot spool the import: {e}")).into()
}

fn blocking_failed(e: actix_web::error::BlockingError) -> ApiError {
    StoreError::Internal(format!("blocking task failed: {e}")).into()
}

/// Appends `piece` to the spool file on the blocking pool; hands both back.
async fn write_piece(
    mut file: tempfile::NamedTempFile,
    mut piece: Vec<u8>,
) -> Result<(tempfile::NamedTempFile, Vec<u8>), ApiError> {
    web::block(move || {
        file.write_all(&piece)?;
        piece.clear();
        Ok::<_, std::io::Error>((file, piece))
    })
    .await
    .map_err(blocking_failed)?
    .map_err(spool_failed)
}
