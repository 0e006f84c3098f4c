//! The part of AWS IoT's fleet-indexing query language that dynamic thing groups use here:
//! parsing a `queryString` and evaluating it on what the engine knows about a thing.
//!
//! Supported, as AWS spells it:
//!
//! - fields `thingName`, `thingTypeName`, `thingGroupNames` (the static groups a thing is
//!   directly in) and `attributes.{name}`;
//! - `field:value`, with `*` (any run of characters) and `?` (one character) as wildcards,
//!   and values quoted with `"…"` when they hold spaces or special characters;
//! - ranges `field:[low TO high]` (inclusive) and `field:{low TO high}` (exclusive), either end
//!   `*` for open, and `field>value`, `field>=value`, `field<value`, `field<=value`; values
//!   compare as numbers when both sides are numbers, else as text;
//! - `AND`, `OR`, `NOT` (also as a leading `-`), parentheses; terms side by side mean `AND`.
//!
//! Anything else (shadow, connectivity and Device Defender fields, fuzzy or proximity
//! searches) is refused with an error naming what is not supported, so a group never
//! silently matches something other than what its query says on AWS.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

/// The longest query accepted (AWS's documented limit on a fleet-indexing query).
pub const MAX_QUERY_CHARS: usize = 1000;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
    Term(Field, Match),
}

/// What a term looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    ThingName,
    ThingTypeName,
    ThingGroupNames,
    Attribute(String),
}

/// How a term matches a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// Exactly, or with `*` and `?` wildcards.
    Pattern(String),
    /// Between two bounds (`None`: open), each inclusive or not.
    Range {
        low: Option<(String, bool)>,
        high: Option<(String, bool)>,
    },
}

/// Why a query was refused: the message says where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

/// What a query is evaluated on: one thing as the engine holds it.
#[derive(Debug, Clone, Copy)]
pub struct Indexed<'a> {
    pub thing_name: &'a str,
    pub thing_type_name: Option<&'a str>,
    pub attributes: &'a Map<String, Value>,
    pub thing_group_names: &'a [String],
}

impl Query {
    /// Parses `text`, or says why it is not a query the engine evaluates.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        if text.trim().is_empty() {
            return Err(QueryError("the query is empty".into()));
        }
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError(format!(
                "the query is longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0 };
        let query = parser.or()?;
        match parser.peek() {
            None => Ok(query),
            Some(token) => Err(QueryError(format!("unexpected {token} in the query"))),
        }
    }

    /// Whether the thing matches.
    pub fn matches(&self, thing: &Indexed<'_>) -> bool {
        match self {
            Query::And(a, b) => a.matches(thing) && b.matches(thing),
            Query::Or(a, b) => a.matches(thing) || b.matches(thing),
            Query::Not(q) => !q.matches(thing),
            Query::Term(field, matcher) => match field {
                Field::ThingName => matcher.matches(thing.thing_name),
                Field::ThingTypeName => thing.thing_type_name.is_some_and(|t| matcher.matches(t)),
                Field::ThingGroupNames => {
                    thing.thing_group_names.iter().any(|g| matcher.matches(g))
                }
                Field::Attribute(name) => match thing.attributes.get(name) {
                    Some(Value::String(value)) => matcher.matches(value),
                    Some(other @ (Value::Number(_) | Value::Bool(_))) => {
                        matcher.matches(&other.to_string())
                    }
                    _ => false,
                },
            },
        }
    }

    /// Whether the query looks at static group membership (so a membership change must
    /// re-evaluate it).
    pub fn uses_groups(&self) -> bool {
        match self {
            Query::And(a, b) | Query::Or(a, b) => a.uses_groups() || b.uses_groups(),
            Query::Not(q) => q.uses_groups(),
            Query::Term(field, _) => *field == Field::ThingGroupNames,
        }
    }
}

impl Match {
    fn matches(&self, value: &str) -> bool {
        match self {
            Match::Pattern(pattern) => wildcard(pattern.as_bytes(), value.as_bytes()),
            Match::Range { low, high } => {
                let above = low.as_ref().is_none_or(|(bound, inclusive)| {
                    let order = compare(value, bound);
                    order == Ordering::Greater || (*inclusive && order == Ordering::Equal)
                });
                let below = high.as_ref().is_none_or(|(bound, inclusive)| {
                    let order = compare(value, bound);
                    order == Ordering::Less || (*inclusive && order == Ordering::Equal)
                });
                above && below
            }
        }
    }
}

/// Numbers compare as numbers, anything else as text.
fn compare(value: &str, bound: &str) -> Ordering {
    match (value.parse::<f64>(), bound.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => value.cmp(bound),
    }
}

/// `*` matches any run of bytes, `?` one character; everything else itself.
fn wildcard(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == b'?' {
            p += 1;
            v += utf8_width(value[v]);
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((sp, sv)) = star {
            p = sp + 1;
            v = sv + utf8_width(value[sv]);
            star = Some((sp, v));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

fn utf8_width(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    /// A quoted value: wildcards inside are literal.
    Quoted(String),
    Colon,
    Compare(&'static str),
    Open,
    Close,
    RangeOpen(bool),
    RangeClose(bool),
    Minus,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "{w:?}"),
            Token::Quoted(q) => write!(f, "\"{q}\""),
            Token::Colon => f.write_str("':'"),
            Token::Compare(op) => write!(f, "'{op}'"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::RangeOpen(true) => f.write_str("'['"),
            Token::RangeOpen(false) => f.write_str("'{'"),
            Token::RangeClose(true) => f.write_str("']'"),
            Token::RangeClose(false) => f.write_str("'}'"),
            Token::Minus => f.write_str("'-'"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ':' => {
                chars.next();
                tokens.push(Token::Colon);
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '[' | '{' => {
                chars.next();
                tokens.push(Token::RangeOpen(c == '['));
            }
            ']' | '}' => {
                chars.next();
                tokens.push(Token::RangeClose(c == ']'));
            }
            '<' | '>' => {
                chars.next();
                let equal = chars.next_if_eq(&'=').is_some();
                tokens.push(Token::Compare(match (c, equal) {
                    ('<', false) => "<",
                    ('<', true) => "<=",
                    ('>', false) => ">",
                    _ => ">=",
                }));
            }
            '-' if tokens.last().is_none_or(|t| {
                !matches!(t, Token::Colon | Token::Compare(_) | Token::RangeOpen(_))
            }) =>
            {
                chars.next();
                tokens.push(Token::Minus);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err(QueryError("unterminated quoted value".into())),
                        },
                        Some(other) => value.push(other),
                        None => return Err(QueryError("unterminated quoted value".into())),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            '~' | '^' | '!' | '&' | '|' => {
                return Err(QueryError(format!(
                    "{c:?} is not supported: use AND, OR and NOT, without fuzzy, proximity or boost operators"
                )));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || ":()[]{}<>\"~^".contains(c) {
                        break;
                    }
                    if c == '\\' {
                        chars.next();
                        if let Some(escaped) = chars.next() {
                            word.push(escaped);
                        }
                        continue;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn or(&mut self) -> Result<Query, QueryError> {
        let mut query = self.and()?;
        while self.keyword("OR") {
            self.next();
            query = Query::Or(Box::new(query), Box::new(self.and()?));
        }
        Ok(query)
    }

    fn and(&mut self) -> Result<Query, QueryError> {
        let mut query = self.unary()?;
        loop {
            if self.keyword("AND") {
                self.next();
            } else if self.peek().is_none()
                || self.keyword("OR")
                || self.peek() == Some(&Token::Close)
            {
                return Ok(query);
            }
            // Terms side by side are joined with AND.
            query = Query::And(Box::new(query), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Query, QueryError> {
        match self.next() {
            Some(Token::Word(w)) if w == "NOT" => Ok(Query::Not(Box::new(self.unary()?))),
            Some(Token::Minus) => Ok(Query::Not(Box::new(self.unary()?))),
            Some(Token::Open) => {
                let query = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(query),
                    _ => Err(QueryError("a '(' is not closed".into())),
                }
            }
            Some(Token::Word(field)) => self.term(&field),
            Some(other) => Err(QueryError(format!(
                "expected a field such as attributes.name, got {other}"
            ))),
            None => Err(QueryError(
                "the query ends where a term was expected".into(),
            )),
        }
    }

    fn term(&mut self, name: &str) -> Result<Query, QueryError> {
        if matches!(name, "AND" | "OR") {
            return Err(QueryError(format!("{name} needs a term on each side")));
        }
        if !matches!(self.peek(), Some(Token::Colon | Token::Compare(_))) {
            return Err(QueryError(format!(
                "{name} must be followed by ':' and a value (free-text search is not supported)"
            )));
        }
        let field = field(name)?;
        match self.next() {
            Some(Token::Colon) => {}
            Some(Token::Compare(op)) => {
                let value = self.value(name)?;
                let bound = Some((value, op.ends_with('=')));
                let range = if op.starts_with('>') {
                    Match::Range {
                        low: bound,
                        high: None,
                    }
                } else {
                    Match::Range {
                        low: None,
                        high: bound,
                    }
                };
                return Ok(Query::Term(field, range));
            }
            _ => unreachable!("checked above"),
        }
        if let Some(Token::RangeOpen(low_inclusive)) = self.peek().cloned() {
            self.next();
            let low = self.value(name)?;
            if !self.keyword("TO") {
                return Err(QueryError(format!(
                    "a range on {name} is written [low TO high]"
                )));
            }
            self.next();
            let high = self.value(name)?;
            let Some(Token::RangeClose(high_inclusive)) = self.next() else {
                return Err(QueryError(format!(
                    "the range on {name} is not closed with ']' or '}}'"
                )));
            };
            let bound = |v: String, inclusive| (v != "*").then_some((v, inclusive));
            return Ok(Query::Term(
                field,
                Match::Range {
                    low: bound(low, low_inclusive),
                    high: bound(high, high_inclusive),
                },
            ));
        }
        match self.next() {
            Some(Token::Word(value)) => Ok(Query::Term(field, Match::Pattern(value))),
            // Wildcards in a quoted value are literal: escape them for the matcher by
            // matching exactly (a quoted `*` is rare in attribute values; refuse it clearly).
            Some(Token::Quoted(value)) if value.contains(['*', '?']) => Err(QueryError(format!(
                "the quoted value {value:?} for {name} holds '*' or '?', which are wildcards here"
            ))),
            Some(Token::Quoted(value)) => Ok(Query::Term(field, Match::Pattern(value))),
            _ => Err(QueryError(format!("{name}: expects a value after ':'"))),
        }
    }

    fn value(&mut self, name: &str) -> Result<String, QueryError> {
        match self.next() {
            Some(Token::Word(value) | Token::Quoted(value)) => Ok(value),
            _ => Err(QueryError(format!("{name}: expects a value"))),
        }
    }
}

/// The field a name in a query stands for.
fn field(name: &str) -> Result<Field, QueryError> {
    match name {
        "thingName" => Ok(Field::ThingName),
        "thingTypeName" => Ok(Field::ThingTypeName),
        "thingGroupNames" => Ok(Field::ThingGroupNames),
        _ => match name.strip_prefix("attributes.") {
            Some(attribute) if crate::jobs::valid_attribute(attribute, "") => {
                Ok(Field::Attribute(attribute.to_owned()))
            }
            Some(attribute) => Err(QueryError(format!(
                "{attribute:?} is not a valid attribute name"
            ))),
            None => Err(QueryError(format!(
                "the field {name:?} is not supported here; use thingName, thingTypeName, \
                 thingGroupNames or attributes.<name>"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn thing<'a>(attributes: &'a Map<String, Value>, groups: &'a [String]) -> Indexed<'a> {
        Indexed {
            thing_name: "sensor-17",
            thing_type_name: Some("gateway"),
            attributes,
            thing_group_names: groups,
        }
    }

    fn check(query: &str, expected: bool) {
        let attributes = json!({ "site": "berlin", "fw": "2.4.1", "rack": "7", "hw": "rev b" });
        let Value::Object(attributes) = attributes else {
            unreachable!()
        };
        let groups = vec!["lab".to_owned(), "eu-west".to_owned()];
        let parsed = Query::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(
            parsed.matches(&thing(&attributes, &groups)),
            expected,
            "{query} → {parsed:?}"
        );
    }

    #[test]
    fn terms_wildcards_and_ranges_match_like_fleet_indexing() {
        check("attributes.site:berlin", true);
        check("attributes.site:paris", false);
        check("attributes.site:ber*", true);
        check("attributes.site:b?rlin", true);
        check("attributes.missing:*", false);
        check("attributes.site:*", true);
        check("thingName:sensor-*", true);
        check("thingTypeName:gateway", true);
        check("thingGroupNames:lab", true);
        check("thingGroupNames:eu-*", true);
        check("thingGroupNames:us", false);
        check("attributes.rack:[5 TO 10]", true);
        check("attributes.rack:[7 TO 10]", true);
        check("attributes.rack:{7 TO 10]", false);
        check("attributes.rack:[10 TO *]", false);
        check("attributes.rack>6", true);
        check("attributes.rack>=7", true);
        check("attributes.rack<7", false);
        check("attributes.hw:\"rev b\"", true);
    }

    #[test]
    fn boolean_operators_group_and_negate() {
        check("attributes.site:berlin AND attributes.rack:7", true);
        check("attributes.site:berlin attributes.rack:8", false);
        check("attributes.site:paris OR attributes.rack:7", true);
        check("NOT attributes.site:paris", true);
        check("-attributes.site:berlin", false);
        check(
            "(attributes.site:paris OR attributes.site:berlin) AND NOT thingGroupNames:us",
            true,
        );
        check(
            "attributes.site:paris OR attributes.site:berlin AND attributes.rack:8",
            false,
        );
    }

    #[test]
    fn unsupported_or_malformed_queries_say_why() {
        for (query, says) in [
            ("", "empty"),
            ("shadow.reported.fw:1", "not supported"),
            ("connectivity.connected:true", "not supported"),
            ("attributes.site:berlin~", "not supported"),
            ("berlin", "free-text"),
            ("attributes.site:", "expects a value"),
            ("(attributes.site:berlin", "not closed"),
            ("attributes.rack:[1 10]", "[low TO high]"),
            ("attributes.site:berlin AND", "ends"),
            ("attributes.site:\"open", "unterminated"),
        ] {
            let error = Query::parse(query).expect_err(query);
            assert!(error.0.contains(says), "{query}: {error}");
        }
    }

    #[test]
    fn group_terms_are_noticed() {
        assert!(
            Query::parse("attributes.a:1 OR NOT thingGroupNames:x")
                .expect("a query")
                .uses_groups()
        );
        assert!(
            !Query::parse("attributes.a:1")
                .expect("a query")
                .uses_groups()
        );
    }
}
