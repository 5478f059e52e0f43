//! Redis glob patterns (`KEYS` / `SCAN MATCH`): `*`, `?` (one character), `[abc]`, `[a-z]`,
//! `[^a]` and `\` escapes, with Redis's own reading of odd patterns (`[a-]`, an unclosed `[`).
//! Matching runs in O(pattern × key) time: no input makes it exponential.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Star,
    AnyChar,
    Literal(char),
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClassItem {
    Char(char),
    Range(char, char),
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::AnyChar),
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    tokens.push(Token::Literal(chars[i]));
                }
                '[' => {
                    let (token, end) = parse_class(&chars, i + 1);
                    tokens.push(token);
                    i = end;
                }
                c => tokens.push(Token::Literal(c)),
            }
            i += 1;
        }
        Glob { tokens }
    }

    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut t, mut p) = (0, 0);
        // Where to resume after the last `*`: (pattern index after it, text index it covers up to).
        let mut resume: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::Star) => {
                    p += 1;
                    resume = Some((p, t));
                }
                Some(token) if token_matches(token, text[t]) => {
                    p += 1;
                    t += 1;
                }
                _ => match resume {
                    Some((star_p, star_t)) => {
                        p = star_p;
                        t = star_t + 1;
                        resume = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|token| *token == Token::Star)
    }
}

/// Parses a `[...]` class whose body starts at `start`; returns the token and the index of its
/// closing `]` (or of the last character, for an unclosed class, as Redis reads it).
fn parse_class(chars: &[char], start: usize) -> (Token, usize) {
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    loop {
        let remaining = chars.len().saturating_sub(i);
        if remaining == 0 {
            return (
                Token::Class { negated, items },
                chars.len().saturating_sub(1),
            );
        }
        match chars[i] {
            '\\' if remaining >= 2 => {
                i += 1;
                items.push(ClassItem::Char(chars[i]));
            }
            ']' => return (Token::Class { negated, items }, i),
            c if remaining >= 3 && chars[i + 1] == '-' => {
                let end = chars[i + 2];
                let (lo, hi) = if c <= end { (c, end) } else { (end, c) };
                items.push(ClassItem::Range(lo, hi));
                i += 2;
            }
            c => items.push(ClassItem::Char(c)),
        }
        i += 1;
    }
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Star => true,
        Token::AnyChar => true,
        Token::Literal(l) => *l == c,
        Token::Class { negated, items } => {
            let hit = items.iter().any(|item| match item {
                ClassItem::Char(x) => *x == c,
                ClassItem::Range(lo, hi) => (*lo..=*hi).contains(&c),
            });
            hit != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).matches(text)
    }

    #[test]
    fn redis_documented_examples() {
        // From the Redis KEYS documentation.
        for t in ["hello", "hallo", "hxllo"] {
            assert!(m("h?llo", t), "{t}");
        }
        for t in ["hllo", "heeeello"] {
            assert!(m("h*llo", t), "{t}");
        }
        assert!(m("h[ae]llo", "hello") && m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && m("h[^e]llo", "hbllo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hallo") && m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
    }

    #[test]
    fn star_question_and_empty() {
        assert!(m("*", "") && m("*", "anything") && m("**", "x"));
        assert!(m("", "") && !m("", "a"));
        assert!(!m("?", "") && m("?", "é") && !m("?", "ab"));
        assert!(m("user:*", "user:101") && !m("user:*", "session:1"));
        assert!(m("*:1*", "a:b:10") && !m("*:1*", "a:b:20"));
        assert!(m("a*b*c", "aXXbYYc") && !m("a*b*c", "aXXbYY"));
    }

    #[test]
    fn escapes_make_specials_literal() {
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "aXb"));
        assert!(m("\\?", "?") && !m("\\?", "x"));
        assert!(m("[\\]]", "]") && m("a\\", "a\\"));
    }

    #[test]
    fn redis_edge_readings_of_classes() {
        assert!(m("[z-a]", "m")); // reversed ranges are swapped
        // Redis reads "[a-]" as the range ']'..'a' with no closing bracket.
        assert!(m("[a-]", "_") && m("[a-]", "a") && !m("[a-]", "b"));
        assert!(m("a[bc", "ab") && m("a[bc", "ac")); // an unclosed class ends with the pattern
        assert!(!m("[]", "a") && m("[^]", "a"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "a*".repeat(500));
        assert!(!m(&pattern, &text));
    }
}
