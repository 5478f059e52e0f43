//! What a command's function is given: [`Call`], and who runs it: [`Context`].

use super::reply::Reply;
use crate::budget::ResponseBudget;
use crate::deadline::Deadline;
use crate::error::StoreError;

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
}

impl Call<'_> {
    /// `text` as a bulk string reply, charged to the response's budget.
    pub fn bulk(&self, text: String) -> Result<Reply, StoreError> {
        self.budget.charge(text.len())?;
        Ok(Reply::Str(text))
    }
}
