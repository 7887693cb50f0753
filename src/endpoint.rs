//! [`Endpoint`]: where a server listens, `host:port`, as one type from the parser through
//! the CCS to the connection ([`crate::server::connection_info`] builds a Redis connection
//! from it; TLS settings belong here when they come).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `host:port`; an IPv6 host is written in brackets (`[::1]:6379`). Stored and shown as
/// that text, parsed by [`Endpoint::from_str`] only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    /// `host:port` with a port from 1 to 65535; `[v6]:port` for an IPv6 host.
    fn from_str(text: &str) -> Result<Endpoint, String> {
        let bad = || format!("expected `host:port`, got `{text}`");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        let port = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
        Ok(Endpoint::new(host, port))
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for text in ["127.0.0.1:6379", "[::1]:7000", "db.example:1"] {
            let e: Endpoint = text.parse().unwrap();
            assert_eq!(e.to_string(), text);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Endpoint>(&json).unwrap(), e);
        }
        assert_eq!("[::1]:7000".parse::<Endpoint>().unwrap().host, "::1");
        for bad in ["", "host", ":1", "h:0", "h:65536", "h:x"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
