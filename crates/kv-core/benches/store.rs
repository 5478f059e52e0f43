//! Criterion benchmarks of kv-core's hot operations over a real SQLite file, so regressions
//! show up without a server: `cargo bench -p kv-core`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kv_core::args::{IncrArgs, SetArgs, SetExpiry};
use kv_core::backend::{self, ConnectionOptions};
use kv_core::expiry::{self, Ttl};
use kv_core::glob::Glob;
use kv_core::precondition::Precondition;
use kv_core::{DatabaseUrl, DbConnection, now_ms, store};

const KEYS: usize = 10_000;

fn open(dir: &tempfile::TempDir) -> DbConnection {
    let url: DatabaseUrl = dir
        .path()
        .join("bench.sqlite3")
        .display()
        .to_string()
        .parse()
        .expect("url");
    let mut conn = backend::connect(&url, &ConnectionOptions::default()).expect("connect");
    backend::run_migrations(&mut conn).expect("migrate");
    conn
}

fn set_args(value: &str) -> SetArgs {
    SetArgs {
        value: value.to_owned(),
        expiry: SetExpiry::At(now_ms() + 3_600_000),
        precondition: Precondition::default(),
    }
}

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = open(&dir);
    let value = r#"{"name":"Emeka","role":"Engineer","skills":["Python","Django"]}"#;
    let args = set_args(value);
    store::write(&mut conn, now_ms(), |tx| {
        for i in 0..KEYS {
            tx.set(&format!("bench:{i}"), &args)?;
        }
        Ok(())
    })
    .expect("load");

    let mut i = 0usize;
    c.bench_function("get (hit)", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store::get(&mut conn, now_ms(), &format!("bench:{i}")).expect("get"))
        })
    });
    c.bench_function("get (miss)", |b| {
        b.iter(|| black_box(store::get(&mut conn, now_ms(), "missing").expect("get")))
    });
    c.bench_function("set (one transaction each)", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let key = format!("bench:{i}");
            black_box(store::write(&mut conn, now_ms(), |tx| tx.set(&key, &args)).expect("set"))
        })
    });
    c.bench_function("set x100 (one transaction, as group commit batches)", |b| {
        b.iter(|| {
            store::write(&mut conn, now_ms(), |tx| {
                for _ in 0..100 {
                    i = (i + 7919) % KEYS;
                    tx.set(&format!("bench:{i}"), &args)?;
                }
                Ok(())
            })
            .expect("batch")
        })
    });
    let incr = IncrArgs {
        by: 1,
        decrement: false,
        expires_at_if_created: None,
    };
    c.bench_function("incr", |b| {
        b.iter(|| {
            i = (i + 1) % 100;
            let key = format!("hot:{i}");
            black_box(
                store::write(&mut conn, now_ms(), |tx| {
                    tx.incr(&key, &incr, &Precondition::default())
                })
                .expect("incr"),
            )
        })
    });
}

fn bench_rules(c: &mut Criterion) {
    let now = now_ms();
    c.bench_function("expiry rules", |b| {
        b.iter(|| {
            let at =
                expiry::expires_at_after(black_box(now), Ttl::Seconds(black_box(60))).expect("ttl");
            black_box((
                expiry::is_expired(Some(at), now),
                expiry::ttl_remaining_secs(Some(at), now),
                expiry::format_rfc3339_ms(at),
            ))
        })
    });
    let glob = Glob::new("user:[0-9]*:session?");
    c.bench_function("glob match", |b| {
        b.iter(|| black_box(glob.matches(black_box("user:12345:sessionX"))))
    });
}

criterion_group!(benches, bench_store, bench_rules);
criterion_main!(benches);
