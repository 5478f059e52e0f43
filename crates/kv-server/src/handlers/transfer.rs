//! `GET /_export` and `POST /_import`: NDJSON out and in (kv-core's `transfer`).

use std::io::{BufReader, Write};

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use kv_core::args::ImportMode;
use kv_core::idempotency::IdempotentRequest;
use kv_core::store::Tx;
use kv_core::transfer::{self, Chunk, ExportFilter, ImportSummary};
use kv_core::view::ImportView;
use kv_core::{StoreError, now_ms};
use serde::Deserialize;

use crate::auth::Reach;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Fingerprint, REPLAYED};
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

/// `POST /_import`: NDJSON lines as `GET /_export` writes them. The body is written to a temp
/// file as it arrives, checked whole (every line, every key within a scoped key's reach),
/// then applied: in one transaction (all or nothing) when it has at most
/// [`transfer::CHUNK_LINES`] lines and [`transfer::CHUNK_BYTES`] bytes, else in a sequence of
/// transactions of that size, each all or nothing, with other requests' writes between them
/// (see [`import_in_chunks`]).
#[utoipa::path(post, path = "/_import", tag = "transfer", operation_id = "import",
    params(
        ("mode" = Option<String>, Query, description = "What to do with a key that is live already: `replace` (default), `skip_existing`, `fail_on_existing` (409, nothing imported)", pattern = "^(replace|skip_existing|fail_on_existing)$"),
    ),
    request_body(content = Option<String>, content_type = "text/plain", description = "NDJSON: one `{\"key\",\"value\",\"expires_at\"?,\"version\"?}` a line, as `GET /_export` writes them; read whatever the Content-Type (`application/x-ndjson` is apt). Empty: nothing to import. Up to 10,000 lines and 4 MiB are applied all or nothing; a longer import in chunks of that size, one transaction each"),
    responses(
        (status = 200, description = "Imported (or nothing to import)", body = ImportView),
        (status = 409, description = "mode=fail_on_existing and a key exists; nothing imported (an import in chunks: `committed_lines` says what was)", body = ErrorBody),
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
    let chunks = web::block(move || check_lines(&path, max_line, &reach))
        .await
        .map_err(blocking_failed)??;
    let path = file.path().to_owned();
    let now = now_ms();
    let idempotent = idempotency::request_of(&req, || fingerprint, state.idempotency_retention_ms)?;
    let answer = if chunks.len() > 1 {
        import_in_chunks(&state, idempotent, path, &chunks, max_line, mode).await
    } else {
        state
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
            .await
    };
    drop(file);
    answer
}

/// An import longer than one chunk: each chunk is a write transaction of its own, queued
/// behind the writes that came while the one before ran, so no other writer waits for more
/// than one chunk. Each chunk's keys take that chunk's version; the answer's `version` is the
/// last one. A chunk that fails stops the import with its error and `committed_lines`, the
/// lines the chunks before it imported. `mode=fail_on_existing` reads every key first (no
/// lock held), so a key that was live before the import began stops it before any chunk.
/// With an Idempotency-Key, the last chunk stores the whole import's answer, and a repeat of
/// an import that completed gets it back before any chunk runs.
async fn import_in_chunks(
    state: &AppState,
    idempotent: Option<IdempotentRequest>,
    path: std::path::PathBuf,
    chunks: &[Chunk],
    max_line: usize,
    mode: ImportMode,
) -> Result<HttpResponse, ApiError> {
    if let Some(request) = &idempotent {
        // Writes nothing, so it stores nothing: it only answers whether a response is stored.
        let probe = state
            .write_answer(
                Some(request.clone()),
                now_ms(),
                |_| Ok(()),
                |()| StoredResponse::json(200, &(), None),
            )
            .await?;
        if probe.headers().contains_key(REPLAYED) {
            return Ok(probe);
        }
    }
    let stopped = |committed_lines: u64| {
        move |err: ApiError| ApiError::ImportStopped {
            committed_lines,
            source: Box::new(err),
        }
    };
    if mode == ImportMode::FailOnExisting {
        let (path, now) = (path.clone(), now_ms());
        state
            .db(move |conn| {
                let input = BufReader::new(std::fs::File::open(&path).map_err(|e| {
                    StoreError::Internal(format!("reopening the spooled import: {e}"))
                })?);
                transfer::find_existing(conn, now, input, max_line)
            })
            .await
            .map_err(stopped(0))?;
    }
    let (mut summary, mut version) = (ImportSummary::default(), None);
    let count = chunks.len() as u64;
    for (i, &chunk) in chunks.iter().enumerate() {
        let path = path.clone();
        let apply = move |tx: &mut Tx<'_>| {
            let input = chunk.open(&path)?;
            let done = transfer::import_chunk(tx, &chunk, input, max_line, mode)?;
            Ok((done, tx.written_version()))
        };
        let committed = chunk.first_line - 1;
        if i + 1 < chunks.len() {
            let started = std::time::Instant::now();
            let (done, written) = state
                .write(now_ms(), apply)
                .await
                .map_err(stopped(committed))?;
            log::debug!(
                "import chunk {} of {count} (lines {} to {}) applied in {:?}",
                i + 1,
                chunk.first_line,
                chunk.last_line,
                started.elapsed()
            );
            summary += done;
            version = written.or(version);
        } else {
            let render = move |(done, written): (ImportSummary, Option<i64>)| {
                let mut total = summary;
                total += done;
                let mut view = ImportView::new(total, written.or(version));
                view.chunks = count;
                StoredResponse::json(200, &view, None)
            };
            return state
                .write_answer(idempotent, now_ms(), apply, render)
                .await
                .map_err(stopped(committed));
        }
    }
    Err(StoreError::Internal("an import of no chunks".into()).into())
}

/// Parses every line of the spooled import and checks that its key is within `reach`;
/// returns the chunks it is applied in.
fn check_lines(
    path: &std::path::Path,
    max_line: usize,
    reach: &Reach,
) -> Result<Vec<Chunk>, ApiError> {
    let input = BufReader::new(std::fs::File::open(path).map_err(spool_failed)?);
    let mut out_of_reach = None;
    let checked = transfer::plan_chunks(input, max_line, |number, line| {
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
        None => checked.map_err(ApiError::from),
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
