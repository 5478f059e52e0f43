//! What the command table declares of each command ([`Spec`]): its name, arity, keys and
//! function, and the rules read from them (arity, which arguments are keys).

use super::call::Call;
use super::reply::Reply;
use super::source::Source;
use crate::error::StoreError;
use crate::store::Tx;

/// A command's declaration.
#[derive(Debug)]
pub struct Spec {
    /// Lowercase, as Redis names it.
    pub name: &'static str,
    /// As Redis's: `n` parts exactly (the command's name counts as one), `-n` at least `n`.
    pub arity: i32,
    /// Which arguments are keys.
    pub keys: KeySpec,
    /// Its function, which also says whether it writes.
    pub run: Run,
}

/// The function that runs a command.
#[derive(Clone, Copy)]
pub enum Run {
    /// Reads only: runs on a read connection, or inside a write transaction beside writes.
    Read(fn(&mut dyn Source, &Call<'_>) -> Result<Reply, StoreError>),
    /// Writes: runs in a write transaction (refused to a read-only API key).
    Write(fn(&mut Tx<'_>, &Call<'_>) -> Result<Reply, StoreError>),
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Run::Read(_) => "Read",
            Run::Write(_) => "Write",
        })
    }
}

/// Which of a command's arguments are keys (for API keys scoped to prefixes, and for the
/// key checks a write makes before it writes anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// No key (PING, ECHO, TIME).
    None,
    /// The arguments from index `first` (0 is the first argument after the name) to `last`
    /// (negative: counted from the end, -1 the last argument), every `step`th: Redis's
    /// first/last/step key specification.
    Range {
        first: usize,
        last: isize,
        step: usize,
    },
    /// Keys found by listing (KEYS, SCAN, RANDOMKEY): a scoped API key lists only its own
    /// prefixes.
    Listing,
    /// Every key, counted or deleted (DBSIZE, FLUSHDB, FLUSHALL): refused to a scoped key.
    Every,
    /// The argument at index `at` counts the keys that follow it (SINTERCARD, ZUNION, EVAL).
    NumKeys { at: usize },
    /// The first argument is a destination key, the second counts the keys that follow it
    /// (ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE).
    DestinationNumKeys,
}

impl Spec {
    pub fn is_write(&self) -> bool {
        matches!(self.run, Run::Write(_))
    }

    /// Whether `parts` parts (the name included) fit the arity.
    pub fn arity_fits(&self, parts: usize) -> bool {
        let parts = i32::try_from(parts).unwrap_or(i32::MAX);
        if self.arity >= 0 {
            parts == self.arity
        } else {
            parts >= -self.arity
        }
    }

    /// The keys counted by the argument at index `at`, which follow it.
    fn counted_keys<'a>(&self, args: &[&'a str], at: usize) -> Vec<&'a str> {
        let count = args
            .get(at)
            .and_then(|n| super::value::redis_int(n))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        args.iter().skip(at + 1).take(count).copied().collect()
    }

    /// The arguments of `args` that are keys, by [`KeySpec::Range`], [`KeySpec::NumKeys`] or
    /// [`KeySpec::DestinationNumKeys`] (none for the others).
    pub fn key_args<'a>(&self, args: &[&'a str]) -> Vec<&'a str> {
        if self.keys == KeySpec::DestinationNumKeys {
            let mut keys: Vec<&str> = args.first().copied().into_iter().collect();
            keys.extend(self.counted_keys(args, 1));
            return keys;
        }
        if let KeySpec::NumKeys { at } = self.keys {
            return self.counted_keys(args, at);
        }
        let KeySpec::Range { first, last, step } = self.keys else {
            return Vec::new();
        };
        let last = if last < 0 {
            args.len().checked_sub(last.unsigned_abs())
        } else {
            Some(last.unsigned_abs().min(args.len().saturating_sub(1)))
        };
        match last {
            Some(last) if first < args.len() => {
                args[first..=last].iter().step_by(step).copied().collect()
            }
            _ => Vec::new(),
        }
    }
}
