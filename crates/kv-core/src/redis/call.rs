//! What a command's function is given: [`Call`], who runs it: [`Context`], and the
//! [`Command`] itself as the client sent it.

use super::reply::Reply;
use super::source::Source;
use crate::budget::ResponseBudget;
use crate::deadline::Deadline;
use crate::error::StoreError;
use crate::store::Tx;

/// A command as the client sent it: its name (any case) and arguments as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub args: Vec<String>,
}

/// How a command runs commands of its own (a script's `redis.call`): `execute` and `read` of
/// `redis`, handed down so that a family's file needs no path back to the table.
#[derive(Clone, Copy)]
pub struct Nested {
    pub write: fn(&mut Tx<'_>, &Command, &Context<'_>) -> Result<Reply, StoreError>,
    pub read: fn(&mut dyn Source, &Command, &Context<'_>) -> Result<Reply, StoreError>,
}

/// Who runs commands, and within what bounds: the prefixes of a scoped API key (KEYS, SCAN
/// and RANDOMKEY list only those), the response's budget and the request's deadline (both
/// shared by the commands of a pipeline).
pub struct Context<'a> {
    pub within: Option<&'a [String]>,
    pub budget: &'a ResponseBudget,
    pub deadline: &'a Deadline,
}

/// A command's arguments (the name not included), as its function takes them, and its
/// [`Context`].
pub struct Call<'a> {
    /// The command's name as declared (lowercase).
    pub name: &'static str,
    pub args: Vec<&'a str>,
    pub within: Option<&'a [String]>,
    pub budget: &'a ResponseBudget,
    pub deadline: &'a Deadline,
    pub nested: Nested,
}

impl Call<'_> {
    /// `text` as a bulk string reply, charged to the response's budget.
    pub fn bulk(&self, text: String) -> Result<Reply, StoreError> {
        self.budget.charge(text.len())?;
        Ok(Reply::Str(text))
    }
}
