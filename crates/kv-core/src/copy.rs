//! Copying a whole store from one database to another (`kv-server copy`: SQLite to
//! PostgreSQL and back), collections with their members, and the SQLite backup
//! (`kv-server backup`).

use crate::args::ScanArgs;
use crate::backend::{self, DbConnection};
use crate::changes;
use crate::collections;
use crate::error::StoreError;
use crate::model::{self, KeyValue};
use crate::sorted_sets;
use crate::store;
use crate::transfer::{MEMBER_PAGE, PAGE};

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopySummary {
    /// Live keys copied, each with its value (or members), expiry, version and times as they
    /// were.
    pub copied: u64,
    /// The target's version counter afterwards (at least the source's).
    pub version: i64,
}

/// Copies every live key of `source` into `target`, byte for byte with its expiry, version
/// and times, and raises the target's version counter to the source's, so new writes there
/// continue above every copied version. A collection comes with its members (read
/// `MEMBER_PAGE` at a time, a statement per 1000 written) under a collection id above every
/// id the target had handed out: its source id plus the target's id counter before the copy
/// (so into a new database the ids stay as they were), and the target's counter is raised to
/// its old value plus the source's, so ids it hands out later collide with none. The source is
/// read in one snapshot; the target is written in one transaction (nothing lands unless all of
/// it does). A target that holds live keys is refused unless `overwrite`, which replaces keys
/// of the same name and leaves the others; a replaced row (live or expired) that held a
/// collection has its members queued for removal (`kv_garbage`), as any overwrite does. The
/// copy writes no change log (the target's watchers re-list).
pub fn copy(
    source: &mut DbConnection,
    target: &mut DbConnection,
    now: i64,
    overwrite: bool,
) -> Result<CopySummary, StoreError> {
    backend::read_snapshot(source, |source| {
        let source_version = backend::current_version(source)?;
        backend::write_transaction(target, |target| {
            if !overwrite {
                let held = store::scan(
                    target,
                    now,
                    &ScanArgs {
                        prefix: String::new(),
                        pattern: None,
                        limit: 1,
                        after: None,
                    },
                )?;
                if let Some(row) = held.rows.first() {
                    return Err(StoreError::invalid(
                        "target_not_empty",
                        format!(
                            "the target holds keys already (key {:?}, …); give --overwrite to \
                             copy over them",
                            row.key
                        ),
                    ));
                }
            }
            let mut copied = 0u64;
            let mut after = None;
            let id_base = collections::last_id(target)?;
            loop {
                let mut page = store::scan(
                    source,
                    now,
                    &ScanArgs {
                        prefix: String::new(),
                        pattern: None,
                        limit: PAGE,
                        after,
                    },
                )?;
                // The target's rows these replace: a collection's members are queued.
                let keys: Vec<&str> = page.rows.iter().map(|row| row.key.as_str()).collect();
                for replaced in backend::rows_of(target, &keys)? {
                    if let Some(coll) = replaced.coll {
                        collections::discard(target, coll)?;
                    }
                }
                for row in &mut page.rows {
                    if let Some(coll) = row.coll {
                        copy_members(source, target, row, coll, id_base + coll)?;
                        row.coll = Some(id_base + coll);
                    }
                }
                // Nine columns a row: 1000 rows stay under both databases' parameter limits.
                backend::insert_rows(target, &page.rows)?;
                copied += page.rows.len() as u64;
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            collections::raise_last_id(target, id_base + collections::last_id(source)?)?;
            backend::raise_version(target, source_version)?;
            let version = backend::current_version(target)?;
            // The copied rows come without their history: watchers of the target re-list.
            changes::raise_trim_mark(target, version)?;
            Ok(CopySummary { copied, version })
        })
    })
}

/// Copies the members of the collection `row` of `source` (id `from`) into `target` as the
/// collection `to`, `MEMBER_PAGE` at a time.
fn copy_members(
    source: &mut DbConnection,
    target: &mut DbConnection,
    row: &KeyValue,
    from: i64,
    to: i64,
) -> Result<(), StoreError> {
    let mut after: Option<String> = None;
    loop {
        let (count, last) = match row.kind.as_str() {
            model::HASH => {
                let fields = collections::hash_page(source, from, after.as_deref(), MEMBER_PAGE)?;
                collections::insert_hash(target, to, &fields)?;
                (fields.len(), fields.last().map(|(field, _)| field.clone()))
            }
            model::SET => {
                let members = collections::set_page(source, from, after.as_deref(), MEMBER_PAGE)?;
                collections::insert_set(target, to, &members)?;
                (members.len(), members.last().cloned())
            }
            model::LIST => {
                let offset = after
                    .as_deref()
                    .and_then(|a| a.parse::<i64>().ok())
                    .unwrap_or(0);
                let head = collections::list_head(source, from)?.unwrap_or(0) + offset;
                let page = collections::list_range(source, from, head, head + MEMBER_PAGE - 1)?;
                let values: Vec<String> = page.into_iter().map(|(_, v)| v).collect();
                collections::insert_list(target, to, offset, &values)?;
                (
                    values.len(),
                    Some((offset + values.len() as i64).to_string()),
                )
            }
            model::ZSET => {
                let members =
                    sorted_sets::page_by_member(source, from, after.as_deref(), MEMBER_PAGE)?;
                sorted_sets::insert_all(target, to, &members)?;
                (
                    members.len(),
                    members.last().map(|(member, _)| member.clone()),
                )
            }
            other => {
                return Err(StoreError::Internal(format!(
                    "{:?}: cannot copy a key of type {other:?}",
                    row.key
                )));
            }
        };
        if (count as i64) < MEMBER_PAGE || last.is_none() {
            if row.kind == model::ZSET {
                sorted_sets::build_blocks(target, to, row.length.unwrap_or(0))?;
            }
            return Ok(());
        }
        after = last;
    }
}

/// Writes a consistent copy of a SQLite store to `output` while others go on writing
/// (`VACUUM INTO`: a read transaction, so it sees one snapshot and blocks no writer), first
/// to a temp file beside `output`, renamed into place once complete: `output` is a whole
/// backup or absent, never half of one. Refuses an `output` that exists, and PostgreSQL
/// (whose own tools, `pg_dump` and the like, do this). Returns the backup's size in bytes.
pub fn backup_sqlite(conn: &mut DbConnection, output: &std::path::Path) -> Result<u64, StoreError> {
    use diesel::RunQueryDsl;
    let DbConnection::Sqlite(c) = conn else {
        return Err(StoreError::invalid(
            "not_sqlite",
            "backup copies a SQLite file; back PostgreSQL up with pg_dump (or `kv-server export`)",
        ));
    };
    if output.exists() {
        return Err(StoreError::invalid(
            "backup_exists",
            format!("{} exists already; give a new file name", output.display()),
        ));
    }
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let partial = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let io = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("{what} {}: {e}", output.display()))
    };
    let vacuumed = diesel::sql_query("VACUUM INTO ?")
        .bind::<diesel::sql_types::Text, _>(partial.to_string_lossy().into_owned())
        .execute(c);
    if let Err(e) = vacuumed {
        let _ = std::fs::remove_file(&partial);
        return Err(io("cannot write the backup", &e));
    }
    let size = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    std::fs::rename(&partial, output).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        io("cannot move the backup into place at", &e)
    })?;
    Ok(size)
}
