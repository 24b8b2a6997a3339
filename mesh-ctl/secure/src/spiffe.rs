//! SPIFFE IDs, validated per the SPIFFE ID specification: `spiffe://<trust domain><path>`,
//! the trust domain of `[a-z0-9.-_]` (so no port, no userinfo, no upper case), the path of
//! non-empty segments of `[a-zA-Z0-9.-_]` other than `.` and `..`, no query or fragment,
//! at most 2048 bytes. Nodes are `spiffe://<trust domain>/node/<name>`.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use super::refusal::Refusal;

/// The longest SPIFFE ID the spec allows, in bytes.
pub const MAX_ID: usize = 2048;
/// The longest trust domain the spec allows.
pub const MAX_TRUST_DOMAIN: usize = 255;
const SCHEME: &str = "spiffe://";

/// Why a string is not a (node) SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeError {
    /// Longer than 2048 bytes.
    #[error("SPIFFE ID longer than {MAX_ID} bytes")]
    TooLong,
    /// Does not start with `spiffe://`.
    #[error("SPIFFE ID must start with `spiffe://`")]
    Scheme,
    /// No trust domain after the scheme.
    #[error("empty trust domain")]
    EmptyTrustDomain,
    /// The trust domain is longer than 255 bytes.
    #[error("trust domain longer than {MAX_TRUST_DOMAIN} bytes")]
    TrustDomainTooLong,
    /// A character outside `[a-z0-9.-_]` in the trust domain (a port, userinfo, upper case).
    #[error("character {0:?} not allowed in a trust domain")]
    TrustDomainChar(char),
    /// An empty path segment (`//` or a trailing `/`).
    #[error("empty path segment")]
    EmptySegment,
    /// A `.` or `..` path segment.
    #[error("relative path segment `{0}`")]
    DotSegment(String),
    /// A character outside `[a-zA-Z0-9.-_]` in the path (a query, a fragment, a percent).
    #[error("character {0:?} not allowed in a path")]
    PathChar(char),
    /// A valid SPIFFE ID, but not `/node/<name>` with a 1-63 character name.
    #[error("not a node ID (`/node/<name>`, name of 1 to 63 characters)")]
    NotNode,
}

impl SpiffeError {
    pub fn refusal(&self) -> Refusal {
        Refusal::BadSpiffeId
    }
}

/// A valid SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    id: String,
    /// Where the path starts in `id`.
    path_at: usize,
}

/// Checks a trust domain name on its own.
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeError> {
    if td.is_empty() {
        return Err(SpiffeError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN {
        return Err(SpiffeError::TrustDomainTooLong);
    }
    match td
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(SpiffeError::TrustDomainChar(c)),
        None => Ok(()),
    }
}

impl SpiffeId {
    pub fn parse(s: &str) -> Result<Self, SpiffeError> {
        if s.len() > MAX_ID {
            return Err(SpiffeError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeError::Scheme)?;
        let (td, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        validate_trust_domain(td)?;
        if !path.is_empty() {
            for seg in path[1..].split('/') {
                if seg.is_empty() {
                    return Err(SpiffeError::EmptySegment);
                }
                if seg == "." || seg == ".." {
                    return Err(SpiffeError::DotSegment(seg.to_owned()));
                }
                if let Some(c) = seg
                    .chars()
                    .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
                {
                    return Err(SpiffeError::PathChar(c));
                }
            }
        }
        Ok(Self {
            id: s.to_owned(),
            path_at: SCHEME.len() + td.len(),
        })
    }

    /// The ID of node `name` in `trust_domain`.
    pub fn node(trust_domain: &str, name: &str) -> Result<Self, SpiffeError> {
        let id = Self::parse(&format!("{SCHEME}{trust_domain}/node/{name}"))?;
        id.node_name()?;
        Ok(id)
    }

    /// The trust domain's own ID (no path): what the authority certificate names.
    pub fn trust_domain_id(trust_domain: &str) -> Result<Self, SpiffeError> {
        validate_trust_domain(trust_domain)?;
        Self::parse(&format!("{SCHEME}{trust_domain}"))
    }

    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.path_at]
    }

    pub fn path(&self) -> &str {
        &self.id[self.path_at..]
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The node name, if this is a node ID.
    pub fn node_name(&self) -> Result<&str, SpiffeError> {
        self.path()
            .strip_prefix("/node/")
            .filter(|n| !n.contains('/') && (1..=63).contains(&n.len()))
            .ok_or(SpiffeError::NotNode)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = SpiffeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> Self {
        id.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_parse_into_parts() {
        let id = SpiffeId::parse("spiffe://mesh.example-1_x/node/r1").expect("valid");
        assert_eq!(id.trust_domain(), "mesh.example-1_x", "trust domain");
        assert_eq!(id.path(), "/node/r1", "path");
        assert_eq!(id.node_name(), Ok("r1"), "node name");
        let td = SpiffeId::parse("spiffe://mesh").expect("a trust domain ID");
        assert_eq!(td.path(), "", "no path");
        assert_eq!(td.node_name(), Err(SpiffeError::NotNode), "not a node");
        assert_eq!(
            SpiffeId::node("mesh", "a.B-c_9").expect("valid").as_str(),
            "spiffe://mesh/node/a.B-c_9",
            "node constructor"
        );
    }

    #[test]
    fn invalid_ids_are_refused_with_their_reason() {
        use SpiffeError as E;
        let long = format!("spiffe://mesh/{}", "a".repeat(MAX_ID));
        let cases: &[(&str, E)] = &[
            ("http://mesh/node/a", E::Scheme),
            ("SPIFFE://mesh/node/a", E::Scheme),
            ("spiffe:/mesh/node/a", E::Scheme),
            ("spiffe:///node/a", E::EmptyTrustDomain),
            ("spiffe://Mesh/node/a", E::TrustDomainChar('M')),
            ("spiffe://mesh:8080/node/a", E::TrustDomainChar(':')),
            ("spiffe://user@mesh/node/a", E::TrustDomainChar('@')),
            ("spiffe://mesh/node//a", E::EmptySegment),
            ("spiffe://mesh/node/a/", E::EmptySegment),
            ("spiffe://mesh/", E::EmptySegment),
            ("spiffe://mesh/node/./a", E::DotSegment(".".into())),
            ("spiffe://mesh/node/../a", E::DotSegment("..".into())),
            ("spiffe://mesh/node/a?x=1", E::PathChar('?')),
            ("spiffe://mesh/node/a#f", E::PathChar('#')),
            ("spiffe://mesh/node/a%20", E::PathChar('%')),
            ("spiffe://mesh/node/é", E::PathChar('é')),
            ("spiffe://mesh?q", E::TrustDomainChar('?')),
            (&long, E::TooLong),
        ];
        for (s, want) in cases {
            assert_eq!(SpiffeId::parse(s).as_ref().err(), Some(want), "{s}");
        }
        let td = "a".repeat(MAX_TRUST_DOMAIN + 1);
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://{td}/x")).err(),
            Some(E::TrustDomainTooLong),
            "256-byte trust domain"
        );
        assert_eq!(
            SpiffeId::node("mesh", &"n".repeat(64)).err(),
            Some(E::NotNode),
            "64-char name"
        );
        assert_eq!(
            SpiffeId::node("mesh", "a/b").err(),
            Some(E::NotNode),
            "nested name"
        );
    }

    #[test]
    fn serde_validates() {
        let ok: SpiffeId = serde_json::from_str("\"spiffe://m/node/a\"").expect("valid");
        assert_eq!(ok.node_name(), Ok("a"), "round trip");
        assert!(
            serde_json::from_str::<SpiffeId>("\"spiffe://M/node/a\"").is_err(),
            "upper-case trust domain accepted through serde"
        );
    }
}
