//! [`Endpoint`]: where a server listens, `host:port`, as one type from the parser through
//! the CCS to the connection ([`crate::server::connection_info`] builds a Redis connection
//! from it). An endpoint that speaks TLS is written `rediss://host:port`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `host:port`; an IPv6 host is written in brackets (`[::1]:6379`); one that speaks TLS
/// starts with `rediss://`. Stored and shown as that text, parsed by
/// [`Endpoint::from_str`] only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Speaks only TLS (`rediss://`).
    pub tls: bool,
}

/// The scheme of an endpoint that speaks TLS.
pub const TLS_SCHEME: &str = "rediss://";

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            tls: false,
        }
    }

    /// The same endpoint, speaking TLS when `tls`.
    pub fn with_tls(mut self, tls: bool) -> Endpoint {
        self.tls = tls;
        self
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tls {
            f.write_str(TLS_SCHEME)?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    /// `host:port` with a port from 1 to 65535; `[v6]:port` for an IPv6 host;
    /// `rediss://` before it for TLS (`redis://` is accepted for plain).
    fn from_str(text: &str) -> Result<Endpoint, String> {
        let bad = || format!("expected `host:port`, got `{text}`");
        let (tls, rest) = match text.strip_prefix(TLS_SCHEME) {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix("redis://").unwrap_or(text)),
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        let port = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
        Ok(Endpoint::new(host, port).with_tls(tls))
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
        for text in [
            "127.0.0.1:6379",
            "[::1]:7000",
            "db.example:1",
            "rediss://10.0.0.1:6380",
        ] {
            let e: Endpoint = text.parse().unwrap();
            assert_eq!(e.to_string(), text);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Endpoint>(&json).unwrap(), e);
        }
        assert_eq!("[::1]:7000".parse::<Endpoint>().unwrap().host, "::1");
        assert!("rediss://h:1".parse::<Endpoint>().unwrap().tls);
        assert_eq!(
            "redis://h:1".parse::<Endpoint>().unwrap().to_string(),
            "h:1"
        );
        for bad in ["", "host", ":1", "h:0", "h:65536", "h:x"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
