//! Conditional writes: `nx`, `xx`, `if_version` from the body and the `If-Match` /
//! `If-None-Match` headers. All given conditions must hold. They are checked against the live
//! version of the key inside the write transaction.

use crate::error::StoreError;

/// An `If-Match` / `If-None-Match` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagSet {
    /// `*`: any current version.
    Any,
    /// A list of entity tags; tags that are not versions of ours never match.
    Versions(Vec<i64>),
}

impl EtagSet {
    /// Parses a header value: `*`, or a comma-separated list of `"v"` / `W/"v"`.
    pub fn parse(header: &str) -> Self {
        if header.trim() == "*" {
            return EtagSet::Any;
        }
        let versions = header
            .split(',')
            .filter_map(|tag| {
                let tag = tag.trim();
                let tag = tag.strip_prefix("W/").unwrap_or(tag);
                tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
            })
            .collect();
        EtagSet::Versions(versions)
    }

    /// Whether a key at `current` version (`None` = absent) matches.
    pub fn matches(&self, current: Option<i64>) -> bool {
        match (self, current) {
            (_, None) => false,
            (EtagSet::Any, Some(_)) => true,
            (EtagSet::Versions(list), Some(v)) => list.contains(&v),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// Only if the key is absent.
    pub nx: bool,
    /// Only if the key is present.
    pub xx: bool,
    /// Only if the key's version equals this.
    pub if_version: Option<i64>,
    /// `If-Match`: only if the key exists and its version is listed.
    pub if_match: Option<EtagSet>,
    /// `If-None-Match`: only if the key is absent (`*`) or its version is not listed.
    pub if_none_match: Option<EtagSet>,
}

impl Precondition {
    /// Checks every condition against the key's live version (`None` = absent).
    pub fn check(&self, current: Option<i64>) -> Result<(), StoreError> {
        let fail = |msg: String| Err(StoreError::PreconditionFailed(msg));
        if self.nx && current.is_some() {
            return fail("key already exists (nx)".into());
        }
        if self.xx && current.is_none() {
            return fail("key does not exist (xx)".into());
        }
        if let Some(expected) = self.if_version
            && current != Some(expected)
        {
            return fail(match current {
                Some(v) => format!("version mismatch: expected {expected}, current is {v}"),
                None => format!("version mismatch: expected {expected}, key does not exist"),
            });
        }
        if self
            .if_match
            .as_ref()
            .is_some_and(|tags| !tags.matches(current))
        {
            return fail("If-Match precondition failed".into());
        }
        if self
            .if_none_match
            .as_ref()
            .is_some_and(|tags| tags.matches(current))
        {
            return fail("If-None-Match precondition failed".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etag_lists() {
        assert_eq!(EtagSet::parse("*"), EtagSet::Any);
        assert_eq!(EtagSet::parse(r#""5""#), EtagSet::Versions(vec![5]));
        assert_eq!(
            EtagSet::parse(r#""1", W/"2" ,"x", 3"#),
            EtagSet::Versions(vec![1, 2])
        );
    }

    #[test]
    fn nx_xx_and_versions() {
        let nx = Precondition {
            nx: true,
            ..Default::default()
        };
        assert!(nx.check(None).is_ok() && nx.check(Some(1)).is_err());
        let xx = Precondition {
            xx: true,
            ..Default::default()
        };
        assert!(xx.check(Some(1)).is_ok() && xx.check(None).is_err());
        let v = Precondition {
            if_version: Some(4),
            ..Default::default()
        };
        assert!(v.check(Some(4)).is_ok() && v.check(Some(5)).is_err() && v.check(None).is_err());
    }

    #[test]
    fn headers_behave_as_http_says() {
        let any = Precondition {
            if_match: Some(EtagSet::Any),
            ..Default::default()
        };
        assert!(any.check(Some(9)).is_ok() && any.check(None).is_err());
        let star_none = Precondition {
            if_none_match: Some(EtagSet::Any),
            ..Default::default()
        };
        assert!(star_none.check(None).is_ok() && star_none.check(Some(1)).is_err());
        let list = Precondition {
            if_match: Some(EtagSet::parse(r#""1","2""#)),
            ..Default::default()
        };
        assert!(list.check(Some(2)).is_ok() && list.check(Some(3)).is_err());
    }
}
