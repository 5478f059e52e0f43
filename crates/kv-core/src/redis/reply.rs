//! What a command answers: a RESP2-shaped [`Reply`], and Redis's error texts.

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    /// The status reply `OK` (sent as is, never base64-encoded).
    Ok,
    Int(i64),
    /// A bulk or status string other than `OK` (`PONG`, values, `string`).
    Str(String),
    Array(Vec<Reply>),
    /// An error reply: Redis's text, prefix included (`ERR …`, `WRONGTYPE …`).
    Error(String),
}

pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_A_FLOAT: &str = "ERR value is not a valid float";
pub const SYNTAX: &str = "ERR syntax error";
/// A reply that would pass `--max-response-bytes` (in a pipeline: the replies so far too).
pub const REPLY_TOO_LARGE: &str = "ERR reply exceeds the response limit";

/// Redis's reply to a command given the wrong number of arguments.
pub fn wrong_args(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

/// The error reply `text`.
pub fn error(text: &str) -> Reply {
    Reply::Error(text.to_owned())
}

impl Reply {
    /// About how many bytes the reply takes in a response (what a response budget charges).
    pub fn size(&self) -> usize {
        match self {
            Reply::Nil | Reply::Ok | Reply::Int(_) => 8,
            Reply::Str(text) | Reply::Error(text) => text.len() + 2,
            Reply::Array(items) => items.iter().map(Reply::size).sum::<usize>() + 2,
        }
    }
}
