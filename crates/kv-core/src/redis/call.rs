//! What a command's function is given: [`Call`].

/// A command's arguments (the name not included), as its function takes them, and the
/// prefixes of a scoped API key (KEYS, SCAN and RANDOMKEY list only those).
pub struct Call<'a> {
    /// The command's name as declared (lowercase).
    pub name: &'static str,
    pub args: Vec<&'a str>,
    pub within: Option<&'a [String]>,
}
