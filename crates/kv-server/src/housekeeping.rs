//! The server's own upkeep: it removes keys at their expiry time (so an `expired` event
//! follows an expiry within a second, without waiting for kv-sweeper), removes the members of
//! collections whose key is gone, in bounded batches, and trims the change log to its
//! retention.
//!
//! A timer looks every [`TICK`] at the earliest time a row is due (at or before its expiry,
//! see `Tx::remove_expired`); once that is [`GRACE`] past, it removes expired rows in batches
//! of [`BATCH`] through the writer (each batch a transaction of its own, one version and one
//! `expired` event per key; a due row whose expiry moved on is filed again under it; on
//! PostgreSQL rows another server is removing are passed by, so servers share the work). The grace lets a
//! `GET` right at the expiry still answer "expired" rather than "not found".

use std::time::Duration;

use actix_web::rt::time::sleep;
use actix_web::web;
use kv_core::changes::{self, Retention};
use kv_core::{Store, now_ms};

use crate::state::AppState;

const TICK: Duration = Duration::from_millis(250);
const GRACE_MS: i64 = 250;
const BATCH: i64 = 1000;
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Starts the expiry timer (unless `active_expiry` is off) and the change log's trimming on
/// the current runtime, as two tasks: a long trim never holds expiries back.
pub fn spawn(state: web::Data<AppState>, retention: Retention, active_expiry: bool) {
    if active_expiry {
        let state = state.clone();
        actix_web::rt::spawn(async move {
            while !state.feed.is_closing() {
                if remove_expired(&state).await < BATCH as usize {
                    sleep(TICK).await;
                }
            }
        });
    }
    {
        // The members of deleted, expired and overwritten collections, a bounded batch per
        // transaction (other writes go on between batches).
        let state = state.clone();
        actix_web::rt::spawn(async move {
            while !state.feed.is_closing() {
                match state.write(now_ms(), |tx| tx.collect_garbage()).await {
                    Ok(0) => sleep(TICK).await,
                    Ok(_) => {}
                    Err(err) => {
                        log::warn!("removing the members of deleted collections failed: {err}");
                        sleep(TICK).await;
                    }
                }
            }
        });
    }
    actix_web::rt::spawn(async move {
        while !state.feed.is_closing() {
            let now = now_ms();
            if let Err(err) = state
                .db(move |conn| changes::trim(conn, now, &retention))
                .await
            {
                log::warn!("trimming the change log failed: {err}");
            }
            sleep(TRIM_EVERY).await;
        }
    });
}

/// Removes one batch of rows past their expiry and grace, if a row is due. Returns how many
/// rows were due (removed, or filed again under an expiry that moved on).
async fn remove_expired(state: &AppState) -> usize {
    let now = now_ms();
    let due = match state.db(Store::next_due).await {
        Ok(next) => next.is_some_and(|at| at + GRACE_MS <= now),
        Err(err) => {
            log::debug!("the expiry timer cannot read the earliest expiry: {err}");
            return 0;
        }
    };
    if !due {
        return 0;
    }
    match state
        .write(now, move |tx| tx.remove_expired(BATCH, now - GRACE_MS))
        .await
    {
        Ok(sweep) => sweep.due,
        Err(err) => {
            log::warn!("the expiry timer cannot remove expired keys: {err}");
            0
        }
    }
}
