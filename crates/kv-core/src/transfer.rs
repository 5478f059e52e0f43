//! Moving data in and out: export and import as NDJSON (one
//! `{"key","value","expires_at","version"}` object a line for a string, and
//! `{"key","type":"hash"|"set","value","expires_at","version"}` for a collection, its members
//! as JSON values: see [`write_collection_line`]). `GET /_export`, `POST /_import` and the
//! `kv-server export` and `import` commands run these; the copy between databases is
//! [`crate::copy`].

use std::io::BufRead;

use serde_json::{Map, Value};

use crate::args::{ImportLine, ImportMode, Members, ScanArgs};
use crate::backend::{self, DbConnection};
use crate::collections;
use crate::error::StoreError;
use crate::expiry::{self, MAX_EXPIRES_AT_MS};
use crate::glob::Glob;
use crate::key::validate_writable_key;
use crate::model::{self, KeyValue};
use crate::redis::value::{member_text, score_from_json, score_json, stored_json};
use crate::request::parse_body;
use crate::sorted_sets;
use crate::store::{self, Tx};

/// Keys read from the database per statement while exporting or copying.
pub(crate) const PAGE: usize = 1000;

/// Members read from the database per statement while exporting or copying a collection.
pub(crate) const MEMBER_PAGE: i64 = 1000;

/// An export hands its lines to the sink once they reach this many bytes (and at the end of
/// each page of keys): a page of large collections is not held whole.
const EXPORT_FLUSH_BYTES: usize = 1 << 20;

/// The fields of an export line; an import line may hold only these.
const LINE_FIELDS: &[&str] = &["key", "type", "value", "expires_at", "version"];

/// Which live keys an export takes: those under any of `prefixes` (none: every key) that
/// match `pattern`, if given.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// In byte order, none covering another (as a scoped API key's prefixes are).
    pub prefixes: Vec<String>,
    pub pattern: Option<Glob>,
}

impl ExportFilter {
    /// `?prefix=` and `?match=`, checked as `GET /_keys` checks them.
    pub fn parse(prefix: Option<&str>, pattern: Option<&str>) -> Result<Self, StoreError> {
        let args = crate::request::scan_args(prefix, pattern, None, None)?;
        Ok(ExportFilter {
            prefixes: if args.prefix.is_empty() {
                Vec::new()
            } else {
                vec![args.prefix]
            },
            pattern: args.pattern,
        })
    }
}

/// Writes the live keys `filter` selects, in byte order, as NDJSON lines handed to `sink` in
/// chunks of up to `PAGE` lines (or about `EXPORT_FLUSH_BYTES`); `sink` returns `false` to
/// stop (the client went away). All of it is read in one snapshot ([`backend::read_snapshot`]):
/// the export is the store as it was at one instant, and keys expired at `now` are left out;
/// a collection's members are read on the same snapshot, `MEMBER_PAGE` a statement.
/// Memory: the export streams, but one collection's line is built whole before it is handed
/// on, so a collection of n members takes about its n members' JSON in memory at once.
/// Returns the lines written.
pub fn export(
    conn: &mut DbConnection,
    now: i64,
    filter: &ExportFilter,
    sink: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<u64, StoreError> {
    let everything = [String::new()];
    let prefixes = if filter.prefixes.is_empty() {
        &everything[..]
    } else {
        &filter.prefixes[..]
    };
    backend::read_snapshot(conn, |conn| {
        let mut lines = 0;
        for prefix in prefixes {
            let mut after = None;
            loop {
                let page = store::scan(
                    conn,
                    now,
                    &ScanArgs {
                        prefix: prefix.clone(),
                        pattern: filter.pattern.clone(),
                        limit: PAGE,
                        after,
                    },
                )?;
                if !page.rows.is_empty() {
                    let mut chunk = Vec::with_capacity(page.rows.len() * 64);
                    for row in &page.rows {
                        if row.is_string() {
                            write_line(&mut chunk, row)?;
                        } else {
                            write_collection_line(&mut chunk, row, |after| {
                                members_page(conn, row, after)
                            })?;
                        }
                        lines += 1;
                        if chunk.len() >= EXPORT_FLUSH_BYTES && !sink(std::mem::take(&mut chunk)) {
                            return Ok(lines);
                        }
                    }
                    if !chunk.is_empty() && !sink(chunk) {
                        return Ok(lines);
                    }
                }
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(lines)
    })
}

/// Up to `MEMBER_PAGE` members of the collection `row` after `after` (a field or member),
/// in byte order.
fn members_page(
    conn: &mut DbConnection,
    row: &KeyValue,
    after: Option<&str>,
) -> Result<Members, StoreError> {
    let coll = row.coll.ok_or_else(|| {
        StoreError::Internal(format!("{:?}: a collection without an id", row.key))
    })?;
    match row.kind.as_str() {
        model::HASH => Ok(Members::Hash(collections::hash_page(
            conn,
            coll,
            after,
            MEMBER_PAGE,
        )?)),
        model::SET => Ok(Members::Set(collections::set_page(
            conn,
            coll,
            after,
            MEMBER_PAGE,
        )?)),
        // A list pages by offset: `after` counts the elements read before.
        model::LIST => {
            let offset = after.and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
            let head = collections::list_head(conn, coll)?.unwrap_or(0) + offset;
            let page = collections::list_range(conn, coll, head, head + MEMBER_PAGE - 1)?;
            Ok(Members::List(page.into_iter().map(|(_, v)| v).collect()))
        }
        model::ZSET => Ok(Members::Zset(sorted_sets::page_by_member(
            conn,
            coll,
            after,
            MEMBER_PAGE,
        )?)),
        other => Err(StoreError::Internal(format!(
            "{:?}: cannot export a key of type {other:?}",
            row.key
        ))),
    }
}

/// One export line of a string: the stored value spliced in as stored (compact JSON, so one
/// line), no `type`.
pub fn write_line(out: &mut Vec<u8>, row: &KeyValue) -> Result<(), StoreError> {
    let written = (|| {
        out.extend_from_slice(b"{\"key\":");
        serde_json::to_writer(&mut *out, &row.key)?;
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(row.value.as_bytes());
        out.extend_from_slice(b",\"expires_at\":");
        match row.expires_at {
            Some(at) => serde_json::to_writer(&mut *out, &expiry::format_rfc3339_ms(at))?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(format!(",\"version\":{}}}\n", row.version).as_bytes());
        Ok::<_, serde_json::Error>(())
    })();
    written
        .map_err(|e| StoreError::Internal(format!("writing the export line of {:?}: {e}", row.key)))
}

/// One export line of a collection: `{"key","type":"hash","value":{field: member, …},
/// "expires_at","version"}`, `{…,"type":"set","value":[member, …],…}`, a list's elements in
/// order, or `{…,"type":"zset","value":[[member, score], …],…}`; fields and members in byte
/// order, scores JSON numbers (or `"inf"`, `"-inf"`), each member (a Redis string) as its JSON value ([`stored_json`]: `"1"` is `1`,
/// `"red"` is `"red"`), which [`parse_line`] turns back into the same string. `page(after)`
/// gives the members after `after` (all of them when it comes back with fewer than
/// `MEMBER_PAGE`); the line is built whole in `out`.
pub fn write_collection_line(
    out: &mut Vec<u8>,
    row: &KeyValue,
    mut page: impl FnMut(Option<&str>) -> Result<Members, StoreError>,
) -> Result<(), StoreError> {
    let failed = |e: serde_json::Error| {
        StoreError::Internal(format!("writing the export line of {:?}: {e}", row.key))
    };
    out.extend_from_slice(b"{\"key\":");
    serde_json::to_writer(&mut *out, &row.key).map_err(failed)?;
    out.extend_from_slice(b",\"type\":");
    serde_json::to_writer(&mut *out, &row.kind).map_err(failed)?;
    let hash = row.kind == model::HASH;
    out.extend_from_slice(if hash {
        b",\"value\":{"
    } else {
        b",\"value\":["
    });
    let mut after: Option<String> = None;
    let mut first = true;
    loop {
        let members = page(after.as_deref())?;
        let full = members.len() as i64 >= MEMBER_PAGE;
        match members {
            Members::Hash(fields) => {
                for (field, value) in &fields {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, field).map_err(failed)?;
                    out.push(b':');
                    out.extend_from_slice(stored_json(value).as_bytes());
                }
                after = fields.last().map(|(field, _)| field.clone());
            }
            Members::Set(items) => {
                for member in &items {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    out.extend_from_slice(stored_json(member).as_bytes());
                }
                after = items.last().cloned();
            }
            Members::Zset(items) => {
                for (member, score) in &items {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    out.push(b'[');
                    out.extend_from_slice(stored_json(member).as_bytes());
                    out.push(b',');
                    serde_json::to_writer(&mut *out, &score_json(*score)).map_err(failed)?;
                    out.push(b']');
                }
                after = items.last().map(|(member, _)| member.clone());
            }
            Members::List(items) => {
                for element in &items {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    out.extend_from_slice(stored_json(element).as_bytes());
                }
                let read = after
                    .as_deref()
                    .and_then(|a| a.parse::<usize>().ok())
                    .unwrap_or(0);
                after = Some((read + items.len()).to_string());
            }
        }
        if !full || after.is_none() {
            break;
        }
    }
    out.push(if hash { b'}' } else { b']' });
    out.extend_from_slice(b",\"expires_at\":");
    match row.expires_at {
        Some(at) => {
            serde_json::to_writer(&mut *out, &expiry::format_rfc3339_ms(at)).map_err(failed)?
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(format!(",\"version\":{}}}\n", row.version).as_bytes());
    Ok(())
}

/// A line's `"type"` and `"value"` as what the key holds: a string's JSON text, or a
/// collection's members as Redis strings (each JSON value's compact text as
/// [`member_text`] reads it, so an exported collection imports back exactly).
fn parse_value(kind: Option<Value>, value: Value) -> Result<(String, Option<Members>), StoreError> {
    let kind = match kind {
        None | Some(Value::Null) => model::STRING.to_owned(),
        Some(Value::String(kind)) => kind,
        Some(_) => {
            return Err(StoreError::invalid(
                "invalid_line",
                "\"type\" must be \"string\", \"hash\", \"set\", \"list\" or \"zset\" (or absent: a string)",
            ));
        }
    };
    match (kind.as_str(), value) {
        (model::STRING, value) => {
            let value = serde_json::to_string(&value)
                .map_err(|e| StoreError::Internal(format!("value not serializable: {e}")))?;
            Ok((value, None))
        }
        (model::HASH, Value::Object(object)) => {
            let fields = object
                .iter()
                .map(|(field, value)| Ok((field.clone(), member_text(value))))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(("null".to_owned(), Some(Members::Hash(fields))))
        }
        (model::SET, Value::Array(items)) => {
            let mut seen = std::collections::HashSet::with_capacity(items.len());
            let mut members = Vec::with_capacity(items.len());
            for item in &items {
                let text = member_text(item);
                if seen.insert(text.clone()) {
                    members.push(text);
                }
            }
            Ok(("null".to_owned(), Some(Members::Set(members))))
        }
        (model::LIST, Value::Array(items)) => {
            let elements = items.iter().map(member_text).collect();
            Ok(("null".to_owned(), Some(Members::List(elements))))
        }
        (model::ZSET, Value::Array(items)) => {
            // A member given twice keeps its last score (as ZADD).
            let mut at = std::collections::HashMap::with_capacity(items.len());
            let mut members: Vec<(String, f64)> = Vec::with_capacity(items.len());
            for item in &items {
                let pair = match item {
                    Value::Array(pair) if pair.len() == 2 => pair,
                    _ => return Err(zset_shape()),
                };
                let text = member_text(&pair[0]);
                let score = score_from_json(&pair[1]).ok_or_else(zset_shape)?;
                match at.get(&text) {
                    Some(&i) => members[i] = (text, score),
                    None => {
                        at.insert(text.clone(), members.len());
                        members.push((text, score));
                    }
                }
            }
            Ok(("null".to_owned(), Some(Members::Zset(members))))
        }
        (model::ZSET, _) => Err(zset_shape()),
        (model::LIST, _) => Err(StoreError::invalid(
            "invalid_line",
            "the \"value\" of a list must be an array of its elements",
        )),
        (model::HASH, _) => Err(StoreError::invalid(
            "invalid_line",
            "the \"value\" of a hash must be an object of its fields",
        )),
        (model::SET, _) => Err(StoreError::invalid(
            "invalid_line",
            "the \"value\" of a set must be an array of its members",
        )),
        (other, _) => Err(StoreError::invalid(
            "invalid_line",
            format!("unknown type {other:?}; a line's \"type\" is string, hash, set, list or zset"),
        )),
    }
}

fn zset_shape() -> StoreError {
    StoreError::invalid(
        "invalid_line",
        "the \"value\" of a zset must be an array of [member, score] pairs; a score is a number, \"inf\" or \"-inf\"",
    )
}

/// Parses one line (without its line break).
pub fn parse_line(line: &[u8]) -> Result<ImportLine, StoreError> {
    let Some(Value::Object(mut object)) = parse_body(line)? else {
        return Err(StoreError::invalid(
            "invalid_line",
            "each line must be a JSON object {\"key\",\"value\",\"expires_at\",\"version\"}",
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !LINE_FIELDS.contains(&k.as_str())) {
        return Err(StoreError::invalid(
            "invalid_line",
            format!(
                "unknown field {unknown:?}; a line has key, type, value, expires_at and version"
            ),
        ));
    }
    let key = match object.remove("key") {
        Some(Value::String(key)) => key,
        _ => {
            return Err(StoreError::invalid(
                "invalid_line",
                "\"key\" must be a string",
            ));
        }
    };
    validate_writable_key(&key)?;
    let value = object
        .remove("value")
        .ok_or_else(|| StoreError::invalid("missing_value", "Missing value in line"))?;
    let expires_at = parse_expires_at(&mut object)?;
    match object.remove("version") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v > 0) => {}
        Some(_) => {
            return Err(StoreError::invalid(
                "invalid_line",
                "\"version\" must be a positive integer (or absent)",
            ));
        }
    }
    let (value, members) = parse_value(object.remove("type"), value)?;
    Ok(ImportLine {
        key,
        value,
        expires_at,
        members,
    })
}

fn parse_expires_at(object: &mut Map<String, Value>) -> Result<Option<i64>, StoreError> {
    let bad = || {
        StoreError::invalid(
            "invalid_expires_at",
            "\"expires_at\" must be null or an RFC 3339 time such as \"2026-11-21T23:59:00.123Z\"",
        )
    };
    match object.remove("expires_at") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let at = expiry::parse_rfc3339_ms(&text).ok_or_else(bad)?;
            if at > MAX_EXPIRES_AT_MS {
                return Err(StoreError::invalid(
                    "invalid_expires_at",
                    "\"expires_at\" is after 9999-12-31T23:59:59.999Z",
                ));
            }
            Ok(Some(at))
        }
        Some(_) => Err(bad()),
    }
}

/// Reads NDJSON from `input` and calls `f` with each line's number (from 1) and parsed
/// content. Blank lines are skipped, `\r\n` is a line break too. A line longer than
/// `max_line_bytes` or one that does not parse stops it with an error naming the line.
pub fn for_each_line(
    input: impl BufRead,
    max_line_bytes: usize,
    mut f: impl FnMut(u64, ImportLine) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    read_lines(input, 1, max_line_bytes, |number, _, line| match line {
        Some(line) => f(number, line),
        None => Ok(()),
    })
}

/// [`for_each_line`] for `input` whose first line is line `first` of the import, telling `f`
/// too how many bytes each line took (its break included) and blank lines (`None`). Returns
/// the number of the last line read (`first - 1` when there was none).
fn read_lines(
    mut input: impl BufRead,
    first: u64,
    max_line_bytes: usize,
    mut f: impl FnMut(u64, u64, Option<ImportLine>) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut buf = Vec::new();
    let mut number = first - 1;
    loop {
        buf.clear();
        let read = std::io::Read::take(&mut input, max_line_bytes as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(|e| StoreError::Internal(format!("reading the import: {e}")))?;
        if read == 0 {
            return Ok(number);
        }
        number += 1;
        let complete = buf.last() == Some(&b'\n');
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max_line_bytes || (!complete && read > max_line_bytes) {
            return Err(StoreError::invalid(
                "line_too_long",
                format!("the line is longer than {max_line_bytes} bytes"),
            )
            .in_line(number));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            f(number, read as u64, None)?;
            continue;
        }
        let parsed = parse_line(line).map_err(|e| e.in_line(number))?;
        f(number, read as u64, Some(parsed)).map_err(|e| e.in_line(number))?;
    }
}

/// The most lines one import transaction applies, a collection's line counting as many lines
/// as it has members (at least 1: see [`ImportLine::weight`]), since each member is a row to
/// write. An import of no more lines (and no more than [`CHUNK_BYTES`]) is one transaction, all
/// or nothing; a longer one is applied as a sequence of transactions of at most this many
/// lines, one after the other, each all or nothing (a collection's line whole in one of them,
/// so a chunk may end up to one collection's members over this), so that it never holds the
/// write lock for long: a chunk of 10,000 small lines
/// holds SQLite's for about 65 ms in a release build (6.5 s a million keys) and 200–450 ms in
/// a debug one on the 2-core development machine, well under the busy timeout (5 s by
/// default) that other writers wait.
pub const CHUNK_LINES: u64 = 10_000;

/// The most bytes of lines one import transaction applies (a chunk ends at the line that
/// reaches this, so it may hold one line more than this): large values cost more to write
/// than small ones, and 10,000 lines of 1 MiB each would hold the lock for long again (8 MiB
/// of 4 KB values took 700 ms in a debug build, 4 MiB half that).
pub const CHUNK_BYTES: u64 = 4 << 20;

/// One transaction's share of a spooled import: the byte range of its lines in the file
/// and the numbers of its first and last lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub len: u64,
    pub first_line: u64,
    pub last_line: u64,
}

impl Chunk {
    /// The chunk's lines of the spooled import at `path`, to hand to [`import_chunk`].
    pub fn open(&self, path: &std::path::Path) -> Result<impl BufRead + use<>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let reopen = |e: std::io::Error| {
            StoreError::Internal(format!(
                "reopening the spooled import {}: {e}",
                path.display()
            ))
        };
        let mut file = std::fs::File::open(path).map_err(reopen)?;
        file.seek(SeekFrom::Start(self.offset)).map_err(reopen)?;
        Ok(std::io::BufReader::new(file.take(self.len)))
    }
}

/// Parses every line of `input` (as [`for_each_line`], calling `f` with each) and splits it
/// into the chunks it is applied in: [`CHUNK_LINES`] lines (a collection's weighing its
/// members) or [`CHUNK_BYTES`] bytes a chunk, whichever comes first. An input that is empty
/// or blank is one empty chunk.
pub fn plan_chunks(
    input: impl BufRead,
    max_line_bytes: usize,
    f: impl FnMut(u64, &ImportLine) -> Result<(), StoreError>,
) -> Result<Vec<Chunk>, StoreError> {
    plan_chunks_of(input, max_line_bytes, CHUNK_LINES, CHUNK_BYTES, f)
}

fn plan_chunks_of(
    input: impl BufRead,
    max_line_bytes: usize,
    chunk_lines: u64,
    chunk_bytes: u64,
    mut f: impl FnMut(u64, &ImportLine) -> Result<(), StoreError>,
) -> Result<Vec<Chunk>, StoreError> {
    let mut chunks = Vec::new();
    let mut open = Chunk {
        offset: 0,
        len: 0,
        first_line: 1,
        last_line: 0,
    };
    // The chunk's lines so far, a collection's weighing its members.
    let mut weight = 0u64;
    read_lines(input, 1, max_line_bytes, |number, bytes, line| {
        weight += match &line {
            Some(line) => {
                f(number, line)?;
                line.weight()
            }
            None => 1,
        };
        open.len += bytes;
        open.last_line = number;
        if weight >= chunk_lines || open.len >= chunk_bytes {
            weight = 0;
            chunks.push(open);
            open = Chunk {
                offset: open.offset + open.len,
                len: 0,
                first_line: number + 1,
                last_line: number,
            };
        }
        Ok(())
    })?;
    if open.len > 0 || chunks.is_empty() {
        chunks.push(open);
    }
    Ok(chunks)
}

/// `mode=fail_on_existing` for an import applied in several chunks, checked before the first:
/// the first line (of `input`, all of the import) whose key is live at `now` is a
/// `key_exists` error naming it. Lines whose `expires_at` has passed are not checked (the
/// import skips them), nor are empty collections' (which write nothing). Read-only: a key written after this check is still refused by the
/// chunk that comes to it, with the chunks before that one applied.
pub fn find_existing(
    conn: &mut DbConnection,
    now: i64,
    input: impl BufRead,
    max_line_bytes: usize,
) -> Result<(), StoreError> {
    let mut pending: Vec<(u64, String)> = Vec::with_capacity(PAGE);
    let check = |conn: &mut DbConnection, pending: &mut Vec<(u64, String)>| {
        let keys: Vec<&str> = pending.iter().map(|(_, key)| key.as_str()).collect();
        let live: std::collections::HashSet<String> = backend::rows_of(conn, &keys)?
            .into_iter()
            .filter(|row| !row.is_expired(now))
            .map(|row| row.key)
            .collect();
        let found = pending.iter().find(|(_, key)| live.contains(key));
        if let Some((number, key)) = found {
            return Err(StoreError::KeyExists(key.clone()).in_line(*number));
        }
        pending.clear();
        Ok::<_, StoreError>(())
    };
    for_each_line(input, max_line_bytes, |number, line| {
        if expiry::is_expired(line.expires_at, now) || line.is_empty_collection() {
            return Ok(());
        }
        pending.push((number, line.key));
        if pending.len() == PAGE {
            check(conn, &mut pending)?;
        }
        Ok(())
    })?;
    check(conn, &mut pending)
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Keys written.
    pub imported: u64,
    /// Lines of keys that were live already (`mode=skip_existing`).
    pub skipped_existing: u64,
    /// Lines whose `expires_at` had passed.
    pub skipped_expired: u64,
}

impl std::ops::AddAssign for ImportSummary {
    fn add_assign(&mut self, other: Self) {
        self.imported += other.imported;
        self.skipped_existing += other.skipped_existing;
        self.skipped_expired += other.skipped_expired;
    }
}

/// Imports the lines of `input` in the transaction of `tx`: all of them or, on any error,
/// none (the caller's transaction rolls back). Every key written takes the transaction's one
/// new version, as the ops of a `/_tx` do. String lines are applied `PAGE` at a time (two
/// statements each, see [`Tx::import_lines`]), so memory stays flat whatever the length; a
/// collection's line one at a time, in order with them ([`Tx::import_collection`]): it
/// replaces the key (a collection it held has its members queued for removal) with a new
/// collection of its members. A collection's line without members writes nothing and leaves
/// the key as it was (an empty collection does not exist); it counts as neither imported nor
/// skipped.
pub fn import(
    tx: &mut Tx<'_>,
    input: impl BufRead,
    max_line_bytes: usize,
    mode: ImportMode,
) -> Result<ImportSummary, StoreError> {
    import_from(tx, input, 1, max_line_bytes, mode)
}

/// [`import`] of one [`Chunk`] (opened with [`Chunk::open`]), its lines numbered as in the
/// whole import.
pub fn import_chunk(
    tx: &mut Tx<'_>,
    chunk: &Chunk,
    input: impl BufRead,
    max_line_bytes: usize,
    mode: ImportMode,
) -> Result<ImportSummary, StoreError> {
    import_from(tx, input, chunk.first_line, max_line_bytes, mode)
}

fn import_from(
    tx: &mut Tx<'_>,
    input: impl BufRead,
    first_line: u64,
    max_line_bytes: usize,
    mode: ImportMode,
) -> Result<ImportSummary, StoreError> {
    let mut summary = ImportSummary::default();
    let mut pending = Vec::with_capacity(PAGE);
    let apply =
        |tx: &mut Tx<'_>, pending: &mut Vec<(u64, ImportLine)>, summary: &mut ImportSummary| {
            let lines = pending.len() as u64;
            let imported = tx.import_lines(std::mem::take(pending), mode)?;
            summary.imported += imported;
            summary.skipped_existing += lines - imported;
            Ok::<_, StoreError>(())
        };
    read_lines(input, first_line, max_line_bytes, |number, _, line| {
        let Some(line) = line else {
            return Ok(());
        };
        if expiry::is_expired(line.expires_at, tx.now()) {
            summary.skipped_expired += 1;
            return Ok(());
        }
        if line.members.is_some() {
            if line.is_empty_collection() {
                return Ok(());
            }
            // The string lines before it first: it sees what they wrote.
            if !pending.is_empty() {
                apply(tx, &mut pending, &mut summary)?;
            }
            if tx.import_collection(number, line, mode)? {
                summary.imported += 1;
            } else {
                summary.skipped_existing += 1;
            }
            return Ok(());
        }
        pending.push((number, line));
        if pending.len() == PAGE {
            apply(tx, &mut pending, &mut summary)?;
        }
        Ok(())
    })?;
    if !pending.is_empty() {
        apply(tx, &mut pending, &mut summary)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Result<Vec<(u64, ImportLine)>, StoreError> {
        let mut out = Vec::new();
        for_each_line(text.as_bytes(), 100, |n, line| {
            out.push((n, line));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn an_export_line_parses_back_to_the_same_key_value_and_expiry() {
        let row = KeyValue::string(
            "user:1/α",
            r#"{"b":1,"a":[1.50,"x\ny"]}"#.into(),
            7,
            1,
            2,
            Some(1_790_000_000_123),
        );
        let mut out = Vec::new();
        write_line(&mut out, &row).expect("line");
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("\"expires_at\":\"2026-09-21T"), "{text}");
        let parsed = parse_line(text.trim_end().as_bytes()).expect("parse");
        assert_eq!(parsed.key, row.key);
        assert_eq!(parsed.value, row.value, "value byte for byte");
        assert_eq!(parsed.expires_at, row.expires_at);
    }

    #[test]
    fn a_collection_line_parses_back_to_the_same_members_as_redis_strings() {
        let tricky = [
            "1",
            "red",
            "1.50",
            "\"quoted\"",
            "",
            " 1",
            "{\"b\":1,\"a\":2}",
            "12345678901234567890123",
            "null",
            "h\u{e9}\n",
        ];
        let mut fields: Vec<(String, String)> = tricky
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("f{i}"), (*m).to_owned()))
            .collect();
        fields.sort();
        let mut members: Vec<String> = tricky.iter().map(|m| (*m).to_owned()).collect();
        members.sort();
        let scores = [f64::NEG_INFINITY, -1.5, 0.0, 1e300, f64::INFINITY, 0.1, 2.0];
        let scored: Vec<(String, f64)> = members
            .iter()
            .zip(scores.iter().cycle())
            .map(|(m, s)| (m.clone(), *s))
            .collect();
        for (kind, all) in [
            (model::HASH, Members::Hash(fields)),
            (model::SET, Members::Set(members)),
            (model::ZSET, Members::Zset(scored)),
        ] {
            let row = KeyValue {
                kind: kind.to_owned(),
                coll: Some(3),
                length: Some(all.len() as i64),
                ..KeyValue::string("c", "null".into(), 9, 1, 2, Some(1_790_000_000_123))
            };
            let mut out = Vec::new();
            let mut pages = 0;
            write_collection_line(&mut out, &row, |after| {
                pages += 1;
                Ok(match (after, &all) {
                    (None, _) => all.clone(),
                    (Some(_), Members::Hash(_)) => Members::Hash(Vec::new()),
                    (Some(_), Members::Set(_)) => Members::Set(Vec::new()),
                    (Some(_), Members::List(_)) => Members::List(Vec::new()),
                    (Some(_), Members::Zset(_)) => Members::Zset(Vec::new()),
                })
            })
            .expect("line");
            assert_eq!(pages, 1, "a short page is the last");
            let text = String::from_utf8(out).expect("utf8");
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            assert!(
                text.starts_with(&format!("{{\"key\":\"c\",\"type\":\"{kind}\",\"value\":")),
                "{text}"
            );
            assert!(
                text.contains(r#""red""#) && text.contains(r#""\"quoted\"""#),
                "{text}"
            );
            let parsed = parse_line(text.trim_end().as_bytes()).expect("parse");
            assert_eq!(parsed.members, Some(all), "{text}");
            assert_eq!(parsed.value, "null");
            assert_eq!(parsed.expires_at, row.expires_at);
        }
        let set = parse_line(br#"{"key":"s","type":"set","value":[1,"1",2]}"#).expect("set");
        assert_eq!(
            set.members,
            Some(Members::Set(vec!["1".into(), "2".into()]))
        );
        let zset =
            parse_line(br#"{"key":"z","type":"zset","value":[["a",1],["b","-inf"],["a",2]]}"#)
                .expect("zset");
        assert_eq!(
            zset.members,
            Some(Members::Zset(vec![
                ("a".into(), 2.0),
                ("b".into(), f64::NEG_INFINITY)
            ])),
            "a member given twice keeps its last score"
        );
        for bad in [
            r#"{"key":"z","type":"zset","value":[["a"]]}"#,
            r#"{"key":"z","type":"zset","value":[["a","x"]]}"#,
            r#"{"key":"z","type":"zset","value":{"a":1}}"#,
        ] {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad}");
        }
        let string = parse_line(br#"{"key":"s","type":"string","value":[1]}"#).expect("string");
        assert_eq!((string.value.as_str(), string.members), ("[1]", None));
        let empty = parse_line(br#"{"key":"e","type":"hash","value":{}}"#).expect("empty");
        assert!(empty.is_empty_collection());
        assert_eq!(empty.weight(), 1);
    }

    #[test]
    fn lines_are_numbered_blank_ones_skipped_and_errors_name_their_line() {
        let got = lines("{\"key\":\"a\",\"value\":1}\r\n\n  \n{\"key\":\"b\",\"value\":null}")
            .expect("lines");
        assert_eq!(
            got.iter()
                .map(|(n, l)| (*n, l.key.as_str()))
                .collect::<Vec<_>>(),
            [(1, "a"), (4, "b")]
        );
        for (text, line, code) in [
            ("{\"key\":\"a\",\"value\":1}\nnot json\n", 2, "invalid_json"),
            ("[1]\n", 1, "invalid_line"),
            ("{\"key\":\"a\"}\n", 1, "missing_value"),
            ("{\"key\":1,\"value\":1}\n", 1, "invalid_line"),
            ("{\"key\":\"_x\",\"value\":1}\n", 1, "reserved_key"),
            ("{\"key\":\"a\",\"value\":1,\"ttl\":5}\n", 1, "invalid_line"),
            (
                "{\"key\":\"a\",\"value\":1,\"expires_at\":5}\n",
                1,
                "invalid_expires_at",
            ),
            (
                "{\"key\":\"a\",\"type\":\"zset\",\"value\":[1]}\n",
                1,
                "invalid_line",
            ),
            (
                "{\"key\":\"a\",\"type\":\"hash\",\"value\":[1]}\n",
                1,
                "invalid_line",
            ),
            (
                "{\"key\":\"a\",\"type\":\"set\",\"value\":{}}\n",
                1,
                "invalid_line",
            ),
            (
                "{\"key\":\"a\",\"type\":1,\"value\":1}\n",
                1,
                "invalid_line",
            ),
            (
                "{\"key\":\"a\",\"value\":1,\"version\":-1}\n",
                1,
                "invalid_line",
            ),
            (
                "{\"key\":\"a\",\"value\":1,\"expires_at\":\"+10000-01-01T00:00:00Z\"}\n",
                1,
                "invalid_expires_at",
            ),
        ] {
            let err = lines(text).expect_err(text);
            assert!(
                matches!(err, StoreError::InLine { line: l, .. } if l == line),
                "{text}: {err:?}"
            );
            assert_eq!(err.code(), code, "{text}: {err}");
        }
        let long = format!("{{\"key\":\"a\",\"value\":\"{}\"}}\n", "x".repeat(200));
        assert_eq!(lines(&long).expect_err("long").code(), "line_too_long");
    }

    #[test]
    fn chunks_end_at_their_line_or_byte_count_and_cover_the_input_once() {
        let line = "{\"key\":\"a\",\"value\":1}\n"; // 22 bytes
        let text = format!("{line}\n{line}{line}{line}{line}");
        let plan = |lines, bytes| {
            plan_chunks_of(text.as_bytes(), 100, lines, bytes, |_, _| Ok(())).expect("plan")
        };
        let chunks = plan(2, 1000);
        let at = |c: &Chunk| (c.offset, c.len, c.first_line, c.last_line);
        assert_eq!(
            chunks.iter().map(at).collect::<Vec<_>>(),
            [(0, 23, 1, 2), (23, 44, 3, 4), (67, 44, 5, 6)]
        );
        let chunks = plan(100, 40);
        assert_eq!(
            chunks.iter().map(at).collect::<Vec<_>>(),
            [(0, 45, 1, 3), (45, 44, 4, 5), (89, 22, 6, 6)]
        );
        assert_eq!(plan(100, 1000).len(), 1);
        let empty = plan_chunks_of(&b""[..], 100, 2, 40, |_, _| Ok(())).expect("plan");
        assert_eq!(empty.iter().map(at).collect::<Vec<_>>(), [(0, 0, 1, 0)]);
        // A collection's line weighs its members: 3 of them fill a chunk of 2 lines alone.
        let set = "{\"key\":\"s\",\"type\":\"set\",\"value\":[1,2,3]}\n"; // 41 bytes
        let text = format!("{line}{set}{line}{line}");
        let chunks = plan_chunks_of(text.as_bytes(), 100, 2, 1000, |_, _| Ok(())).expect("plan");
        assert_eq!(
            chunks.iter().map(at).collect::<Vec<_>>(),
            [(0, 63, 1, 2), (63, 44, 3, 4)]
        );
    }

    #[test]
    fn modes_parse_and_a_bad_one_says_which_are_known() {
        assert_eq!("skip_existing".parse(), Ok(ImportMode::SkipExisting));
        let err = "merge".parse::<ImportMode>().expect_err("unknown");
        assert!(err.to_string().contains("fail_on_existing"), "{err}");
    }
}
