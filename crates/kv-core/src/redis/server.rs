//! Server and connection commands: PING, ECHO, TIME, DBSIZE, FLUSHDB and FLUSHALL.

use std::time::{SystemTime, UNIX_EPOCH};

use super::call::Call;
use super::reply::{Reply, SYNTAX, error, wrong_args};
use super::source::Source;
use crate::error::StoreError;
use crate::store::{KeyScope, Tx};

pub(super) fn ping(_: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    match call.args[..] {
        [] => Ok(Reply::Str("PONG".into())),
        [message] => call.bulk(message.to_owned()),
        _ => Ok(wrong_args(call.name)),
    }
}

pub(super) fn echo(_: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    call.bulk(call.args[0].to_owned())
}

pub(super) fn time(_: &mut dyn Source, _: &Call<'_>) -> Result<Reply, StoreError> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Reply::Array(vec![
        Reply::Str(since.as_secs().to_string()),
        Reply::Str(since.subsec_micros().to_string()),
    ]))
}

pub(super) fn dbsize(src: &mut dyn Source, _: &Call<'_>) -> Result<Reply, StoreError> {
    Ok(Reply::Int(src.live_keys()?))
}

/// FLUSHDB and FLUSHALL [ASYNC | SYNC]: the same here, the flush is one transaction.
pub(super) fn flushdb(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let mode_ok = |m: &&str| m.eq_ignore_ascii_case("async") || m.eq_ignore_ascii_case("sync");
    if call.args.len() > 1 || !call.args.iter().all(mode_ok) {
        return Ok(error(SYNTAX));
    }
    tx.delete_keys(&KeyScope::All)?;
    Ok(Reply::Ok)
}
