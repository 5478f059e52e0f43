//! `/_upstash`: the Upstash Redis REST protocol (one command as a JSON array; `/pipeline`,
//! `/multi-exec`), so that Upstash's SDKs work against kvstore, over the same keys as the REST
//! API. This module is the protocol: parsing, access checks, `{"result"}` / `{"error"}`
//! replies, `Upstash-Encoding: base64`, the sync token. The commands are kv-core's `redis`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use kv_core::budget::ResponseBudget;
use kv_core::deadline::Deadline;
use kv_core::error::StoreError;
use kv_core::now_ms;
use kv_core::redis::{self, Command, Context, KeyUse, Reply, Snapshot};
use serde_json::{Value, json};

use crate::auth::{Access, Reach};
use crate::error::ApiError;
use crate::http::json_body;
use crate::peer;
use crate::state::AppState;
use crate::versions::{MinVersion, answered_at};

/// The request header that asks for base64 strings in results.
pub const ENCODING: &str = "upstash-encoding";
/// What the SDKs send about themselves with every request (@upstash/redis by default,
/// upstash-redis also its retry count): a browser's preflight asks for them.
pub const TELEMETRY_HEADERS: [&str; 4] = [
    "upstash-telemetry-runtime",
    "upstash-telemetry-platform",
    "upstash-telemetry-sdk",
    "upstash-telemetry-retry",
];

/// `POST /_upstash`: one command.
pub async fn single(
    req: HttpRequest,
    access: Access,
    reach: Reach,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let base64 = wants_base64(&req);
    let command = match parse_body(&body).and_then(|v| parse_command(&v)) {
        Ok(command) => command,
        Err(error) => return Ok(respond(StatusCode::BAD_REQUEST, json!({ "error": error }))),
    };
    let reply = run(&req, &state, access, &reach, vec![command], Batch::Pipeline)
        .await?
        .pop()
        .unwrap_or(Reply::Nil);
    Ok(match reply {
        Reply::Error(error) => respond(StatusCode::BAD_REQUEST, json!({ "error": error })),
        reply => respond_text(StatusCode::OK, result_text(encode(reply, base64))),
    })
}

/// Runs one command as `/_upstash` does (the key's access and reach, the request's bounds),
/// for the REST routes that are a Redis command underneath (`POST /_eval`).
pub(crate) async fn run_one(
    req: &HttpRequest,
    state: &AppState,
    access: Access,
    reach: &Reach,
    command: Command,
) -> Result<Reply, ApiError> {
    let replies = run(req, state, access, reach, vec![command], Batch::Pipeline).await?;
    Ok(replies.into_iter().next().unwrap_or(Reply::Nil))
}

/// A reply as JSON, as `/_upstash` sends it without base64.
pub(crate) fn reply_json(reply: Reply) -> Value {
    encode(reply, false)
}

/// `POST /_upstash/pipeline`: commands in order, each on its own; 200 with one result each.
pub async fn pipeline(
    req: HttpRequest,
    access: Access,
    reach: Reach,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    batch(req, access, reach, body, state, Batch::Pipeline).await
}

/// `POST /_upstash/multi-exec`: commands in one database transaction (see [`run`]: a
/// pipeline without listings runs as one too, which Upstash does not promise but does not
/// rule out).
pub async fn multi_exec(
    req: HttpRequest,
    access: Access,
    reach: Reach,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    batch(req, access, reach, body, state, Batch::MultiExec).await
}

async fn batch(
    req: HttpRequest,
    access: Access,
    reach: Reach,
    body: web::Bytes,
    state: web::Data<AppState>,
    kind: Batch,
) -> Result<HttpResponse, ApiError> {
    let base64 = wants_base64(&req);
    let commands: Result<Vec<Command>, String> = parse_body(&body).and_then(|body| match body {
        Value::Array(items) if !items.is_empty() => items.iter().map(parse_command).collect(),
        _ => Err("ERR the body must be a JSON array of commands, each a JSON array".to_owned()),
    });
    let commands: Vec<Command> = match commands {
        Ok(commands) if commands.len() > MAX_COMMANDS => {
            let error = format!(
                "ERR a pipeline or multi-exec holds at most {MAX_COMMANDS} commands, not {}",
                commands.len()
            );
            return Ok(respond(StatusCode::BAD_REQUEST, json!({ "error": error })));
        }
        Ok(commands) => commands,
        Err(error) => return Ok(respond(StatusCode::BAD_REQUEST, json!({ "error": error }))),
    };
    let replies = run(&req, &state, access, &reach, commands, kind).await?;
    let items: Vec<Value> = replies
        .into_iter()
        .map(|reply| match reply {
            Reply::Error(error) => json!({ "error": error }),
            reply => json!({ "result": encode(reply, base64) }),
        })
        .collect();
    Ok(respond(StatusCode::OK, Value::Array(items)))
}

/// The most commands a pipeline or multi-exec holds.
pub const MAX_COMMANDS: usize = 1000;

/// How a batch of commands runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// `/_upstash` (one command) or `/pipeline`: in order, each on its own.
    Pipeline,
    /// `/multi-exec`: all in one transaction.
    MultiExec,
}

/// Where a run of consecutive commands goes (see [`run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The group-commit writer: writes, and the point reads between them.
    Writer,
    /// A pooled read connection: listings (KEYS, SCAN, RANDOMKEY, DBSIZE).
    Listing,
    /// The worker's inline reader: point reads only.
    Inline,
}

/// Runs the commands that this key may run (the others answer `NOPERM`), each on its own
/// (a command that fails writes nothing and stops none of the others), within the response
/// limit and the request timeout. Commands that only read run on a read connection and never
/// queue behind the writer: on SQLite inline on the worker thread over its snapshot reader,
/// like `GET /<key>`, or on a pooled connection when they list keys (KEYS, SCAN, RANDOMKEY,
/// DBSIZE). Writes, and the point reads between them, run as one write transaction through
/// the group-commit writer, in order, which also makes `/multi-exec` atomic. A listing never
/// runs inside the writer's transaction: a pipeline runs as consecutive parts in order, its
/// listings on a read connection; in a multi-exec that writes, a listing is refused.
///
/// A request whose commands are all point reads (one inline part: GET, MGET, HGETALL, …) may
/// be answered by a read replica, at the request's `Kv-Min-Version` or newer
/// ([`AppState::read_replicated`]); its `Kv-Version` is then the replica's.
async fn run(
    req: &HttpRequest,
    state: &AppState,
    access: Access,
    reach: &Reach,
    commands: Vec<Command>,
    batch: Batch,
) -> Result<Vec<Reply>, ApiError> {
    let client = peer::probe(req);
    let writes = commands.iter().any(Command::is_write);
    let checked: Vec<Result<Command, Reply>> = commands
        .into_iter()
        .map(|command| match refusal(&command, access, reach) {
            Some(reply) => Err(reply),
            None if batch == Batch::MultiExec && writes && command.is_listing() => {
                Err(Reply::Error(format!(
                    "ERR '{}' lists keys: it cannot run inside a multi-exec that writes (it \
                     would hold every writer); send it in a pipeline",
                    command.name.to_ascii_lowercase()
                )))
            }
            None => Ok(command),
        })
        .collect();
    let (deadline, _client) = Deadline::after(state.request_timeout);
    let bounds = Bounds {
        within: reach.0.as_ref().map(|scope| scope.prefixes().into()),
        deadline: deadline.watching(client),
    };
    let now = now_ms();
    // The response's budget, carried from part to part. Each run of a part (a write may run
    // again: a lost race, a batch run again) starts from what the parts before it left.
    let mut left = state.max_response_bytes;
    let mut replies = Vec::with_capacity(checked.len());
    let parts = parts(checked, batch);
    let only_point_reads = matches!(parts.as_slice(), [(Place::Inline, _)]);
    for (place, part) in parts {
        let reads = {
            let (bounds, part) = (bounds.clone(), part.clone());
            move |conn: &mut kv_core::DbConnection| {
                let mut source = Snapshot { conn, now };
                let budget = ResponseBudget::new(left);
                let context = bounds.context(&budget);
                let replies = part
                    .iter()
                    .map(|command| match command {
                        Ok(command) => redis::read(&mut source, command, &context),
                        Err(reply) => Ok(reply.clone()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((replies, budget.left()))
            }
        };
        let count = part.len();
        let ran = match place {
            Place::Writer => {
                let bounds = bounds.clone();
                state
                    .write(now, move |tx| {
                        let budget = ResponseBudget::new(left);
                        let replies = redis::execute_all(tx, &part, &bounds.context(&budget))?;
                        Ok((replies, budget.left()))
                    })
                    .await
            }
            Place::Listing => state.db(reads).await,
            Place::Inline if only_point_reads => {
                let read = state.read_replicated(MinVersion::of(req), reads).await;
                read.map(|(replies, replica_version)| {
                    if let Some(version) = replica_version {
                        answered_at(req, version);
                    }
                    replies
                })
            }
            Place::Inline => state.read_short(reads).await,
        };
        let (part_replies, still_left) = match ran {
            // A script failed: its part wrote nothing, and each command answers its error.
            Err(ApiError::Store(StoreError::Script(text))) => {
                (vec![Reply::Error(text); count], left)
            }
            other => other?,
        };
        left = still_left;
        replies.extend(part_replies);
    }
    Ok(replies)
}

/// What bounds a request's commands, shared by its parts: a scoped key's prefixes and the
/// request's deadline.
#[derive(Clone)]
struct Bounds {
    within: Option<Arc<[String]>>,
    deadline: Deadline,
}

impl Bounds {
    fn context<'a>(&'a self, budget: &'a ResponseBudget) -> Context<'a> {
        Context {
            within: self.within.as_deref(),
            budget,
            deadline: &self.deadline,
        }
    }
}

/// The commands in parts that each run in one place, in order: a multi-exec that writes is
/// one part on the writer; otherwise consecutive listings make a part on a read connection,
/// and the commands between them one on the writer if any of them writes, else inline.
fn parts(
    commands: Vec<Result<Command, Reply>>,
    batch: Batch,
) -> Vec<(Place, Vec<Result<Command, Reply>>)> {
    let writes = |part: &[Result<Command, Reply>]| {
        part.iter().any(|c| c.as_ref().is_ok_and(Command::is_write))
    };
    if batch == Batch::MultiExec && writes(&commands) {
        return vec![(Place::Writer, commands)];
    }
    let mut parts: Vec<(bool, Vec<Result<Command, Reply>>)> = Vec::new();
    for command in commands {
        let listing = command.as_ref().is_ok_and(Command::is_listing);
        // A script is a part of its own: one that fails rolls back its own writes only.
        let script = command.as_ref().is_ok_and(Command::is_script);
        match parts.last_mut() {
            Some((was_listing, part))
                if *was_listing == listing && !script && !is_script_part(part) =>
            {
                part.push(command)
            }
            _ => parts.push((listing, vec![command])),
        }
    }
    parts
        .into_iter()
        .map(|(listing, part)| {
            let place = if listing {
                Place::Listing
            } else if writes(&part) {
                Place::Writer
            } else if is_script_part(&part) {
                // A read-only script runs on a pooled connection, off the HTTP workers.
                Place::Listing
            } else {
                Place::Inline
            };
            (place, part)
        })
        .collect()
}

/// Whether `part` is one script command.
fn is_script_part(part: &[Result<Command, Reply>]) -> bool {
    matches!(part, [Ok(command)] if command.is_script())
}

/// Why this key may not run `command`, as Redis's ACL words it.
fn refusal(command: &Command, access: Access, reach: &Reach) -> Option<Reply> {
    if access == Access::ReadOnly && command.is_write() {
        return Some(Reply::Error(format!(
            "NOPERM this user has no permissions to run the '{}' command",
            command.name.to_ascii_lowercase()
        )));
    }
    let in_reach = match command.keys() {
        KeyUse::Keys(keys) => keys.iter().all(|key| reach.check(key).is_ok()),
        // Listed within the key's own prefixes (see `run`).
        KeyUse::Listing => true,
        KeyUse::Every => reach.0.is_none(),
    };
    (!in_reach).then(|| {
        Reply::Error(
            "NOPERM this user has no permissions to access one of the keys used as arguments"
                .into(),
        )
    })
}

fn wants_base64(req: &HttpRequest) -> bool {
    req.headers()
        .get(ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("base64"))
}

fn parse_body(body: &[u8]) -> Result<Value, String> {
    match json_body(body) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err("ERR the body must be a JSON array".into()),
        Err(err) => Err(format!("ERR {err}")),
    }
}

/// `["SET","k","v","EX",10]`: strings as they are, numbers and booleans as their JSON text,
/// anything else as compact JSON (as the SDKs' serializer sends it).
fn parse_command(value: &Value) -> Result<Command, String> {
    let Value::Array(parts) = value else {
        return Err("ERR a command must be a JSON array".into());
    };
    let mut parts = parts.iter().map(|part| match part {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let name = parts
        .next()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| "ERR empty command".to_owned())?;
    Ok(Command {
        name,
        args: parts.collect(),
    })
}

/// A reply as the SDKs read it: with `base64`, every string but `OK`, at any depth, in
/// base64.
fn encode(reply: Reply, base64: bool) -> Value {
    match reply {
        Reply::Nil => Value::Null,
        Reply::Ok => json!("OK"),
        Reply::Int(n) => json!(n),
        Reply::Str(s) if base64 => json!(base64::engine::general_purpose::STANDARD.encode(s)),
        Reply::Str(s) => json!(s),
        Reply::Array(items) => Value::Array(items.into_iter().map(|r| encode(r, base64)).collect()),
        Reply::Error(e) => json!(e),
    }
}

fn respond(status: StatusCode, body: Value) -> HttpResponse {
    respond_text(status, body.to_string())
}

/// `{"result": …}`, written out without building the object first.
fn result_text(result: Value) -> String {
    let result = result.to_string();
    let mut text = String::with_capacity(result.len() + 11);
    text.push_str("{\"result\":");
    text.push_str(&result);
    text.push('}');
    text
}

/// The response (its `upstash-sync-token`, the store version, is added by
/// [`crate::versions`]).
fn respond_text(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(body)
}
