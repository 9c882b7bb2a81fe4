//! Listener specifications as Kafka writes them: `listeners` is a list of
//! `NAME://HOST:PORT`, where the name is a security protocol or is mapped
//! to one by `listener.security.protocol.map` (`NAME:PROTOCOL,...`). A bare
//! `HOST:PORT` is a PLAINTEXT listener. Pure parsing, unit-tested.

use std::fmt;

use anyhow::{bail, Context};

/// How a listener's connections are secured, by Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener: its name, protocol and `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub address: String,
}

impl ListenerSpec {
    /// `NAME://HOST:PORT`.
    pub fn to_kafka_string(&self) -> String {
        format!("{}://{}", self.name, self.address)
    }
}

/// Kafka's default `listener.security.protocol.map`: each protocol's name
/// is a listener name for itself.
pub const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// Parses `listener.security.protocol.map`.
pub fn parse_protocol_map(map: &str) -> anyhow::Result<Vec<(String, SecurityProtocol)>> {
    let mut out: Vec<(String, SecurityProtocol)> = Vec::new();
    for entry in map.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry.split_once(':').with_context(|| {
            format!("`listener.security.protocol.map` entry `{entry}` is not NAME:PROTOCOL")
        })?;
        let protocol = SecurityProtocol::from_name(protocol.trim()).with_context(|| {
            format!("unknown security protocol `{protocol}` in `listener.security.protocol.map`")
        })?;
        let name = name.trim().to_owned();
        if !valid_listener_name(&name) {
            bail!("listener name `{name}` must be upper-case letters, digits and `_`");
        }
        if out.iter().any(|(n, _)| *n == name) {
            bail!("`listener.security.protocol.map` names `{name}` twice");
        }
        out.push((name, protocol));
    }
    Ok(out)
}

fn valid_listener_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Parses a `listeners` (or `advertised.listeners`) value against the
/// protocol map. Names are unique; every address is `HOST:PORT`.
pub fn parse_listeners(value: &str, protocol_map: &str) -> anyhow::Result<Vec<ListenerSpec>> {
    let map = parse_protocol_map(protocol_map)?;
    let mut out: Vec<ListenerSpec> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = match entry.split_once("://") {
            Some((name, address)) => (name.trim().to_owned(), address.trim().to_owned()),
            None => ("PLAINTEXT".to_owned(), entry.to_owned()),
        };
        let protocol = map
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .with_context(|| {
                format!("listener `{name}` is not in `listener.security.protocol.map`")
            })?;
        if address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none()
        {
            bail!("listener `{entry}` must be NAME://HOST:PORT");
        }
        if out.iter().any(|l| l.name == name) {
            bail!("listener name `{name}` is used twice");
        }
        out.push(ListenerSpec {
            name,
            protocol,
            address,
        });
    }
    if out.is_empty() {
        bail!("no listener given");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_address_is_plaintext() {
        let listeners = parse_listeners("127.0.0.1:9092", DEFAULT_PROTOCOL_MAP).unwrap();
        assert_eq!(
            listeners,
            vec![ListenerSpec {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                address: "127.0.0.1:9092".into()
            }]
        );
    }

    #[test]
    fn several_listeners_and_a_custom_name() {
        let map = format!("{DEFAULT_PROTOCOL_MAP},TENANTS:SASL_SSL");
        let listeners = parse_listeners(
            "PLAINTEXT://127.0.0.1:9092, SASL_PLAINTEXT://127.0.0.1:9094,TENANTS://0.0.0.0:9095",
            &map,
        )
        .unwrap();
        let protocols: Vec<_> = listeners.iter().map(|l| l.protocol).collect();
        assert_eq!(
            protocols,
            vec![
                SecurityProtocol::Plaintext,
                SecurityProtocol::SaslPlaintext,
                SecurityProtocol::SaslSsl
            ]
        );
        assert_eq!(listeners[2].to_kafka_string(), "TENANTS://0.0.0.0:9095");
    }

    #[test]
    fn bad_listeners_are_refused() {
        for bad in [
            "",
            "FOO://127.0.0.1:1",
            "PLAINTEXT://127.0.0.1",
            "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
            "PLAINTEXT://127.0.0.1:99999",
        ] {
            assert!(parse_listeners(bad, DEFAULT_PROTOCOL_MAP).is_err(), "{bad}");
        }
        assert!(parse_protocol_map("A:NOPE").is_err());
        assert!(parse_protocol_map("a:SSL").is_err());
        assert!(parse_protocol_map("A:SSL,A:SASL_SSL").is_err());
    }
}
