//! `POST /_eval`: a Lua script for users without a Redis client. The body
//! `{"script": "…"|"sha": "…", "keys": […], "args": […], "read_only": false}` runs as EVAL or
//! EVALSHA (EVAL_RO / EVALSHA_RO with `read_only`, the only kind a read-only API key may run),
//! through the same command table, checks and limits as `/_upstash`.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use kv_core::error::StoreError;
use kv_core::redis::{Command, Reply};
use serde_json::{Value, json};

use crate::auth::{Access, Reach};
use crate::error::{ApiError, ErrorBody};
use crate::handlers::bodies::EvalRequest;
use crate::http::json_object;
use crate::state::AppState;
use crate::upstash;

/// The command a body asks for.
fn command_of(body: &serde_json::Map<String, Value>) -> Result<Command, StoreError> {
    let invalid = |text: &str| StoreError::invalid("invalid_body", text);
    if let Some(unknown) = body
        .keys()
        .find(|k| !["script", "sha", "keys", "args", "read_only"].contains(&k.as_str()))
    {
        return Err(StoreError::invalid(
            "unknown_field",
            format!(
                "unknown field {unknown:?}; the body takes script or sha, keys, args, read_only"
            ),
        ));
    }
    let read_only = match body.get("read_only") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("\"read_only\" must be true or false")),
    };
    let (name, script) = match (body.get("script"), body.get("sha")) {
        (Some(Value::String(script)), None) => ("eval", script.clone()),
        (None, Some(Value::String(sha))) => ("evalsha", sha.clone()),
        _ => {
            return Err(invalid(
                "the body needs \"script\" (Lua source) or \"sha\" (a loaded script's SHA1), one of them, as a string",
            ));
        }
    };
    let list = |field: &str| -> Result<Vec<String>, StoreError> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(invalid(&format!(
                        "\"{field}\" must be an array of strings or numbers"
                    ))),
                })
                .collect(),
            Some(_) => Err(invalid(&format!("\"{field}\" must be an array"))),
        }
    };
    let keys = list("keys")?;
    let args = list("args")?;
    let mut parts = vec![script, keys.len().to_string()];
    parts.extend(keys);
    parts.extend(args);
    Ok(Command {
        name: if read_only {
            format!("{name}_ro")
        } else {
            name.to_owned()
        },
        args: parts,
    })
}

#[utoipa::path(post, path = "/_eval", tag = "scripting", operation_id = "eval",
    request_body(content = EvalRequest, description = "Parsed as JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "`{\"result\": …}`: the script's reply as `/_upstash` gives it (numbers, strings, null, arrays)", body = Object),
        (status = 400, description = "The script failed (`script_error`: its error text; nothing it wrote was kept) or the body is wrong", body = ErrorBody),
        (status = 403, description = "A read-only API key without `read_only`, or a key out of a scoped API key's reach (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No script with this `sha` (`no_script`)", body = ErrorBody),
    ))]
pub async fn eval(
    req: HttpRequest,
    access: Access,
    reach: Reach,
    body: Bytes,
    state: Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let command = command_of(&json_object(&body)?)?;
    if access == Access::ReadOnly && command.is_write() {
        return Err(ApiError::Forbidden);
    }
    let reply = upstash::run_one(&req, &state, access, &reach, command).await?;
    let (status, body) = match reply {
        Reply::Error(text) if text.starts_with("NOSCRIPT") => (
            StatusCode::NOT_FOUND,
            json!({ "error": text, "code": "no_script" }),
        ),
        Reply::Error(text) if text.starts_with("NOPERM") => (
            StatusCode::FORBIDDEN,
            json!({ "error": text, "code": "forbidden" }),
        ),
        Reply::Error(text) => (
            StatusCode::BAD_REQUEST,
            json!({ "error": text, "code": "script_error" }),
        ),
        reply => (
            StatusCode::OK,
            json!({ "result": upstash::reply_json(reply) }),
        ),
    };
    Ok(HttpResponse::build(status).json(body))
}
